/* Test fixture: a plugin whose canonical schema has 16 item dense values where the backbone has
   17, so it cannot feed it. */
#define FIXTURE_ITEM_DENSE 16u
#include "../fixture_common.h"

static const scenescore_plugin plugin = {
    .abi_version = SCENESCORE_PLUGIN_ABI_VERSION,
    .scene = "fixture",
    .description = "fixture: canonical counts do not fit the backbone",
    .raw = FIXTURE_SCHEMA,
    .canonical = FIXTURE_SCHEMA,
    .create = fixture_create,
    .destroy = fixture_destroy,
    .transform = fixture_transform,
    .postprocess = NULL,
};

SCENESCORE_PLUGIN_EXPORT const scenescore_plugin *scenescore_plugin_entry(void) { return &plugin; }
