/*
 * Shared by the loader's test fixtures (Tests/ScenesTests/PluginTests.swift): a plugin that is
 * correct in every respect except the one its fixture breaks. Canonical counts are the default
 * backbone's (1 context id, 4 context dense, 3 item ids, 17 item dense) unless the fixture sets
 * FIXTURE_ITEM_DENSE; the raw schema is the canonical one and transform() copies it through.
 */
#ifndef SCENESCORE_FIXTURE_COMMON_H
#define SCENESCORE_FIXTURE_COMMON_H

#include <stdio.h>
#include <string.h>
#include "scenescore_plugin.h"

#ifndef FIXTURE_ITEM_DENSE
#define FIXTURE_ITEM_DENSE 17u
#endif

static const char *const fixture_context_ids[] = {"user"};
static const char *const fixture_context_dense[] = {"activity", "zero1", "zero2", "zero3"};
static const char *const fixture_item_ids[] = {"item", "category", "brand"};
/* Long enough for every FIXTURE_ITEM_DENSE a fixture uses. */
static const char *const fixture_item_dense[] = {
    "c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8", "c9", "c10", "c11", "c12", "c13", "c14",
    "c15", "price", "extra1", "extra2", "extra3"};

static int32_t fixture_create(const char *config_json, size_t config_len, void **instance,
                              char *error, size_t error_capacity) {
    (void)config_json; (void)config_len; (void)error; (void)error_capacity;
    *instance = NULL;
    return 0;
}

static void fixture_destroy(void *instance) { (void)instance; }

static int32_t fixture_transform(const void *instance, const scenescore_batch *raw,
                                 scenescore_canonical_out *out, char *error, size_t error_capacity) {
    (void)instance; (void)error; (void)error_capacity;
    memcpy(out->context_ids, raw->context_ids, 1 * sizeof(uint32_t));
    memcpy(out->context_dense, raw->context_dense, 4 * sizeof(float));
    memcpy(out->item_ids, raw->item_ids, (size_t)raw->candidates * 3 * sizeof(uint32_t));
    memcpy(out->item_dense, raw->item_dense, (size_t)raw->candidates * FIXTURE_ITEM_DENSE * sizeof(float));
    return 0;
}

#define FIXTURE_SCHEMA                                                  \
    {                                                                   \
        {1, fixture_context_ids}, {4, fixture_context_dense},           \
        {3, fixture_item_ids}, {FIXTURE_ITEM_DENSE, fixture_item_dense} \
    }

#endif
