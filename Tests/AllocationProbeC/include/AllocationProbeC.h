// backtrace() and dladdr() for the allocation probe's call-site report: Glibc's Swift module
// does not include execinfo.h, and Dl_info needs _GNU_SOURCE.
#ifndef ALLOCATION_PROBE_C_H
#define ALLOCATION_PROBE_C_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <execinfo.h>
#endif
