/* Test fixture: a library that exports a plugin under the wrong name, so it lacks
   scenescore_plugin_entry. */
#include "../fixture_common.h"

static const scenescore_plugin plugin = {
    .abi_version = SCENESCORE_PLUGIN_ABI_VERSION,
    .scene = "fixture",
    .description = "fixture: no entry symbol",
    .raw = FIXTURE_SCHEMA,
    .canonical = FIXTURE_SCHEMA,
    .create = fixture_create,
    .destroy = fixture_destroy,
    .transform = fixture_transform,
    .postprocess = NULL,
};

SCENESCORE_PLUGIN_EXPORT const scenescore_plugin *scenescore_plugin_entry_v0(void);
SCENESCORE_PLUGIN_EXPORT const scenescore_plugin *scenescore_plugin_entry_v0(void) { return &plugin; }
