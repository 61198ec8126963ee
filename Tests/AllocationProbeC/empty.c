// A C target needs one source file; this one only carries the header (include/AllocationProbeC.h).
#include "AllocationProbeC.h"
