/* Test fixture: a plugin built against an ABI version the server does not speak (99). */
#include "../fixture_common.h"

static const scenescore_plugin plugin = {
    .abi_version = 99u,
    .scene = "fixture",
    .description = "fixture: wrong ABI version",
    .raw = FIXTURE_SCHEMA,
    .canonical = FIXTURE_SCHEMA,
    .create = fixture_create,
    .destroy = fixture_destroy,
    .transform = fixture_transform,
    .postprocess = NULL,
};

SCENESCORE_PLUGIN_EXPORT const scenescore_plugin *scenescore_plugin_entry(void) { return &plugin; }
