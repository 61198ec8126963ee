/* Test fixture: a plugin whose create() always fails with its own message. */
#include "../fixture_common.h"

static int32_t failing_create(const char *config_json, size_t config_len, void **instance,
                              char *error, size_t error_capacity) {
    (void)config_json; (void)config_len;
    *instance = NULL;
    snprintf(error, error_capacity, "fixture cannot start: feature store unreachable");
    return 1;
}

static const scenescore_plugin plugin = {
    .abi_version = SCENESCORE_PLUGIN_ABI_VERSION,
    .scene = "fixture",
    .description = "fixture: create() fails",
    .raw = FIXTURE_SCHEMA,
    .canonical = FIXTURE_SCHEMA,
    .create = failing_create,
    .destroy = fixture_destroy,
    .transform = fixture_transform,
    .postprocess = NULL,
};

SCENESCORE_PLUGIN_EXPORT const scenescore_plugin *scenescore_plugin_entry(void) { return &plugin; }
