/*
 * The beauty scene plugin, in plain C (ABI: Sources/ScenePluginABI/include/scenescore_plugin.h;
 * raw schema and mapping: Plugins/README.md).
 *
 * Raw request                         Canonical (default backbone)
 *   context ids   user_id, skin_type    user = user_id                  (skin_type is dropped)
 *   context dense activity_z            activity = activity_z, then three zeros
 *   item ids      product_id, line_id,  item = s*1e6 + product_id, category = s*1e3 + line_id,
 *                 brand_id              brand = s*1e5 + brand_id        (s = scene_index)
 *   item dense    content_0..15,        content_0..15 as sent,
 *                 price_cents           log(price_cents / 100) - mean_log_price
 *
 * postprocess: Platt recalibration of the "click" column,
 *   p' = sigmoid(click_scale * logit(p) + click_shift), identity with the defaults.
 *
 * Config (a flat JSON object of numbers; unknown keys are errors):
 *   scene_index (1: beauty's index in the training world), mean_log_price (2.5),
 *   click_scale (1, > 0), click_shift (0).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "scenescore_plugin.h"

#define CONTENT_DIMS 16u
#define MAX_ITEM 1000000u
#define MAX_CATEGORY 1000u
#define MAX_BRAND 100000u

typedef struct beauty_config {
    uint32_t scene_index;
    float mean_log_price;
    float click_scale;
    float click_shift;
} beauty_config;

/* ---- schema ---- */

static const char *const raw_context_ids[] = {"user_id", "skin_type"};
static const char *const raw_context_dense[] = {"activity_z"};
static const char *const raw_item_ids[] = {"product_id", "line_id", "brand_id"};
static const char *const raw_item_dense[] = {
    "content_0", "content_1", "content_2", "content_3", "content_4", "content_5",
    "content_6", "content_7", "content_8", "content_9", "content_10", "content_11",
    "content_12", "content_13", "content_14", "content_15", "price_cents"};

static const char *const canonical_context_ids[] = {"user"};
static const char *const canonical_context_dense[] = {"activity", "zero_1", "zero_2", "zero_3"};
static const char *const canonical_item_ids[] = {"item", "category", "brand"};
static const char *const canonical_item_dense[] = {
    "content_0", "content_1", "content_2", "content_3", "content_4", "content_5",
    "content_6", "content_7", "content_8", "content_9", "content_10", "content_11",
    "content_12", "content_13", "content_14", "content_15", "log_price_centered"};

#define RAW_CONTEXT_IDS 2u
#define RAW_CONTEXT_DENSE 1u
#define RAW_ITEM_IDS 3u
#define RAW_ITEM_DENSE 17u
#define CANONICAL_CONTEXT_DENSE 4u
#define CANONICAL_ITEM_IDS 3u
#define CANONICAL_ITEM_DENSE 17u

/* ---- config: a flat JSON object whose values are numbers ---- */

typedef struct config_field {
    const char *name;
    double value;
    int seen;
} config_field;

/* Writes the message into the caller's error buffer (snprintf truncates and terminates); returns 1. */
__attribute__((format(printf, 3, 4)))
static int fail(char *error, size_t capacity, const char *format, ...) {
    if (error != NULL && capacity > 0) {
        va_list args;
        va_start(args, format);
        vsnprintf(error, capacity, format, args);
        va_end(args);
    }
    return 1;
}

static size_t skip_space(const char *s, size_t len, size_t i) {
    while (i < len && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r')) i++;
    return i;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

/* Reads the JSON number at s[*i] (RFC 8259 grammar) into *out. */
static int read_number(const char *s, size_t len, size_t *i, double *out) {
    size_t start = *i, j = *i;
    if (j < len && s[j] == '-') j++;
    if (j < len && s[j] == '0') {
        j++;
    } else if (j < len && is_digit(s[j])) {
        while (j < len && is_digit(s[j])) j++;
    } else {
        return 0;
    }
    if (j < len && s[j] == '.') {
        j++;
        if (j >= len || !is_digit(s[j])) return 0;
        while (j < len && is_digit(s[j])) j++;
    }
    if (j < len && (s[j] == 'e' || s[j] == 'E')) {
        j++;
        if (j < len && (s[j] == '+' || s[j] == '-')) j++;
        if (j >= len || !is_digit(s[j])) return 0;
        while (j < len && is_digit(s[j])) j++;
    }
    char buffer[64];
    if (j - start >= sizeof buffer) return 0;
    memcpy(buffer, s + start, j - start);
    buffer[j - start] = '\0';
    *out = strtod(buffer, NULL);
    *i = j;
    return isfinite(*out);
}

static int parse_config(const char *s, size_t len, config_field *fields, size_t count,
                        char *error, size_t capacity) {
    size_t i = skip_space(s, len, 0);
    if (i >= len || s[i] != '{') return fail(error, capacity, "config: expected a JSON object");
    i = skip_space(s, len, i + 1);
    if (i < len && s[i] == '}') {
        i++;
    } else {
        for (;;) {
            if (i >= len || s[i] != '"') return fail(error, capacity, "config: expected a key at byte %zu", i);
            size_t key = ++i;
            while (i < len && s[i] != '"') {
                if (s[i] == '\\' || (unsigned char)s[i] < 0x20)
                    return fail(error, capacity, "config: keys must be plain names (byte %zu)", i);
                i++;
            }
            if (i >= len) return fail(error, capacity, "config: unterminated key");
            size_t key_len = i - key;
            i = skip_space(s, len, i + 1);
            if (i >= len || s[i] != ':') return fail(error, capacity, "config: expected ':' at byte %zu", i);
            i = skip_space(s, len, i + 1);
            config_field *field = NULL;
            for (size_t f = 0; f < count; f++) {
                if (strlen(fields[f].name) == key_len && memcmp(fields[f].name, s + key, key_len) == 0) field = &fields[f];
            }
            int shown = key_len > 64 ? 64 : (int)key_len;
            if (field == NULL)
                return fail(error, capacity,
                            "config: unknown key '%.*s' (known: scene_index, mean_log_price, click_scale, click_shift)",
                            shown, s + key);
            if (field->seen) return fail(error, capacity, "config: key '%s' repeats", field->name);
            if (!read_number(s, len, &i, &field->value))
                return fail(error, capacity, "config: '%s' must be a finite number", field->name);
            field->seen = 1;
            i = skip_space(s, len, i);
            if (i < len && s[i] == ',') { i = skip_space(s, len, i + 1); continue; }
            if (i < len && s[i] == '}') { i++; break; }
            return fail(error, capacity, "config: expected ',' or '}' at byte %zu", i);
        }
    }
    if (skip_space(s, len, i) != len) return fail(error, capacity, "config: trailing bytes after the object");
    return 0;
}

/* ---- the ABI functions ---- */

static int32_t beauty_create(const char *config_json, size_t config_len, void **instance,
                             char *error, size_t error_capacity) {
    *instance = NULL;
    config_field fields[] = {
        {"scene_index", 1, 0}, {"mean_log_price", 2.5, 0}, {"click_scale", 1, 0}, {"click_shift", 0, 0}};
    if (parse_config(config_json, config_len, fields, 4, error, error_capacity)) return 1;
    double scene = fields[0].value;
    if (scene < 0 || scene > 4293 || scene != floor(scene))
        return fail(error, error_capacity, "config: scene_index must be an integer 0…4293, not %g", scene);
    if (fabs(fields[1].value) > 50)
        return fail(error, error_capacity, "config: mean_log_price %g is not a plausible log price", fields[1].value);
    if (!(fields[2].value > 0))
        return fail(error, error_capacity, "config: click_scale must be positive, not %g", fields[2].value);
    /* The instance keeps these as floats: a number finite as a double (1e39) is infinite as a
       float, and an infinite click_scale or click_shift turns scores into NaN in postprocess. */
    for (size_t f = 1; f < 4; f++) {
        if (!isfinite((float)fields[f].value))
            return fail(error, error_capacity, "config: %s %g is out of the float range", fields[f].name, fields[f].value);
    }
    beauty_config *config = malloc(sizeof *config);
    if (config == NULL) return fail(error, error_capacity, "out of memory");
    config->scene_index = (uint32_t)scene;
    config->mean_log_price = (float)fields[1].value;
    config->click_scale = (float)fields[2].value;
    config->click_shift = (float)fields[3].value;
    *instance = config;
    return 0;
}

static void beauty_destroy(void *instance) { free(instance); }

static int32_t beauty_transform(const void *instance, const scenescore_batch *raw,
                                scenescore_canonical_out *out, char *error, size_t error_capacity) {
    const beauty_config *config = instance;
    out->context_ids[0] = raw->context_ids[0];
    out->context_dense[0] = raw->context_dense[0];
    for (uint32_t k = 1; k < CANONICAL_CONTEXT_DENSE; k++) out->context_dense[k] = 0;

    for (uint32_t c = 0; c < raw->candidates; c++) {
        const uint32_t *ids = raw->item_ids + (size_t)c * RAW_ITEM_IDS;
        const float *dense = raw->item_dense + (size_t)c * RAW_ITEM_DENSE;
        uint32_t *cids = out->item_ids + (size_t)c * CANONICAL_ITEM_IDS;
        float *cdense = out->item_dense + (size_t)c * CANONICAL_ITEM_DENSE;
        if (ids[0] >= MAX_ITEM || ids[1] >= MAX_CATEGORY || ids[2] >= MAX_BRAND)
            return fail(error, error_capacity,
                        "candidate %u: product_id %u, line_id %u, brand_id %u must be below %u, %u, %u",
                        c, ids[0], ids[1], ids[2], MAX_ITEM, MAX_CATEGORY, MAX_BRAND);
        cids[0] = config->scene_index * MAX_ITEM + ids[0];
        cids[1] = config->scene_index * MAX_CATEGORY + ids[1];
        cids[2] = config->scene_index * MAX_BRAND + ids[2];
        memcpy(cdense, dense, CONTENT_DIMS * sizeof(float));
        float cents = dense[CONTENT_DIMS];
        if (!(cents >= 1) || !isfinite(cents))
            return fail(error, error_capacity, "candidate %u: price_cents %g must be at least 1", c, (double)cents);
        cdense[CONTENT_DIMS] = (float)(log((double)cents / 100.0) - (double)config->mean_log_price);
    }
    return 0;
}

static int32_t beauty_postprocess(const void *instance, uint32_t candidates, uint32_t outputs,
                                  const char *const *output_names, float *scores,
                                  char *error, size_t error_capacity) {
    const beauty_config *config = instance;
    uint32_t click = outputs;
    for (uint32_t k = 0; k < outputs; k++) {
        if (strcmp(output_names[k], "click") == 0) click = k;
    }
    if (click == outputs) return fail(error, error_capacity, "the head has no 'click' output to calibrate");
    for (uint32_t c = 0; c < candidates; c++) {
        float *p = scores + (size_t)c * outputs + click;
        float q = fminf(fmaxf(*p, 1e-7f), 1 - 1e-7f);
        float z = config->click_scale * logf(q / (1 - q)) + config->click_shift;
        *p = 1 / (1 + expf(-z));
    }
    return 0;
}

static const scenescore_plugin plugin = {
    .abi_version = SCENESCORE_PLUGIN_ABI_VERSION,
    .scene = "beauty",
    .description = "Beauty catalogue: product/line/brand ids, price in cents; Platt-calibrated click",
    .raw = {{RAW_CONTEXT_IDS, raw_context_ids}, {RAW_CONTEXT_DENSE, raw_context_dense},
            {RAW_ITEM_IDS, raw_item_ids}, {RAW_ITEM_DENSE, raw_item_dense}},
    .canonical = {{1, canonical_context_ids}, {CANONICAL_CONTEXT_DENSE, canonical_context_dense},
                  {CANONICAL_ITEM_IDS, canonical_item_ids}, {CANONICAL_ITEM_DENSE, canonical_item_dense}},
    .create = beauty_create,
    .destroy = beauty_destroy,
    .transform = beauty_transform,
    .postprocess = beauty_postprocess,
};

SCENESCORE_PLUGIN_EXPORT const scenescore_plugin *scenescore_plugin_entry(void) { return &plugin; }
