/*
 * SceneScore scene plugin ABI, version 1 — the contract between the server and a scene plugin.
 *
 * A plugin is a shared library in the server's plugin directory, named <name>.so with <name> of
 * [a-z0-9_-]. It exports one function, SCENESCORE_PLUGIN_ENTRY_SYMBOL, returning a pointer to a
 * static, immutable scenescore_plugin that lives as long as the library is loaded.
 *
 * A plugin declares its scene's RAW feature schema — names and counts of the four sections that
 * wire v1 already carries (context ids, context dense, item ids, item dense) — and maps a raw
 * batch onto the backbone's CANONICAL fields. Clients send a plugin scene's raw fields with the
 * unchanged protocol; GET /v1/scenes reports each scene's raw schema.
 *
 * Lifecycle: the server calls create() once per registered head version (off the event loops),
 * transform()/postprocess() for every request of that version, and destroy() once the last
 * request using that version has finished. The library is closed when its last instance is gone,
 * except a library that registers with the Swift runtime (any plugin written in Swift): it stays
 * mapped for the life of the process, so a new build must be installed under a new name.
 *
 * Threading: transform() and postprocess() are called CONCURRENTLY, from every event-loop thread,
 * on the same instance. They must not modify the instance or any global state, and must not
 * allocate on the hot path (all output goes into buffers the caller provides).
 *
 * Memory: every pointer the server passes is valid only during the call, non-NULL (also for a
 * section of zero values) and naturally aligned (uint32_t and float arrays to 4 bytes). Item
 * arrays are candidate-major: candidate c's values start at c * count. `candidates` may be 0
 * (then only the context fields are written).
 *
 * Errors: a function returns 0 on success, non-zero on failure, and then writes a NUL-terminated
 * UTF-8 message of at most error_capacity bytes (including the NUL) into `error`. A failing
 * create() registers nothing. A failing transform() fails that request only, as 422
 * `plugin-rejected` (the plugin refused these raw values: say which and why); a failing
 * postprocess() fails that request only, as 500. The message is the problem's detail.
 */
#ifndef SCENESCORE_PLUGIN_H
#define SCENESCORE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define SCENESCORE_PLUGIN_ABI_VERSION 1u
#define SCENESCORE_PLUGIN_ENTRY_SYMBOL "scenescore_plugin_entry"

/* One section of a schema: `count` values, `names[i]` naming value i (NUL-terminated UTF-8). */
typedef struct scenescore_section {
    uint32_t count;
    const char *const *names;
} scenescore_section;

/* The four sections of wire v1. */
typedef struct scenescore_schema {
    scenescore_section context_ids;   /* uint32 values, once per request */
    scenescore_section context_dense; /* float values, once per request */
    scenescore_section item_ids;      /* uint32 values, per candidate */
    scenescore_section item_dense;    /* float values, per candidate */
} scenescore_schema;

/* One request's features (read-only). Counts follow the schema the batch is in. */
typedef struct scenescore_batch {
    uint32_t candidates;
    const uint32_t *context_ids;   /* [context_ids.count] */
    const float *context_dense;    /* [context_dense.count] */
    const uint32_t *item_ids;      /* [candidates * item_ids.count] */
    const float *item_dense;       /* [candidates * item_dense.count] */
} scenescore_batch;

/* Caller-owned buffers that transform() fills, sized for the canonical schema. */
typedef struct scenescore_canonical_out {
    uint32_t *context_ids;         /* [canonical context_ids.count] */
    float *context_dense;          /* [canonical context_dense.count] */
    uint32_t *item_ids;            /* [candidates * canonical item_ids.count] */
    float *item_dense;             /* [candidates * canonical item_dense.count]; must be finite */
} scenescore_canonical_out;

typedef struct scenescore_plugin {
    /* SCENESCORE_PLUGIN_ABI_VERSION the plugin was built against; the server refuses others. */
    uint32_t abi_version;
    /* The scene this plugin is written for (1..64 of [a-z0-9_-]); the default scene name when
       ops register it. */
    const char *scene;
    /* One line for humans (reported by GET /v1/scenes). May be NULL. */
    const char *description;
    /* What clients send for this scene. */
    scenescore_schema raw;
    /* The canonical counts transform() writes; the server checks them against the backbone's and
       refuses the plugin when they differ. Names are informative (may be NULL). */
    scenescore_schema canonical;

    /* Makes an instance from a JSON object (config_json, config_len bytes, not NUL-terminated;
       "{}" when ops gave none). Stores it in *instance (may be NULL if the plugin needs none). */
    int32_t (*create)(const char *config_json, size_t config_len, void **instance,
                      char *error, size_t error_capacity);
    /* Frees an instance made by create(). Called exactly once per successful create(). */
    void (*destroy)(void *instance);
    /* Maps one raw request onto the canonical fields: writes every value of `out`. */
    int32_t (*transform)(const void *instance, const scenescore_batch *raw,
                         scenescore_canonical_out *out, char *error, size_t error_capacity);
    /* Optional (NULL: scores are returned as the head computed them). Rewrites, in place, the
       candidates x outputs probabilities (row-major; output_names[k] names column k), e.g. a
       calibration, or a blend of click and purchase into one ranking score in column 0. */
    int32_t (*postprocess)(const void *instance, uint32_t candidates, uint32_t outputs,
                           const char *const *output_names, float *scores,
                           char *error, size_t error_capacity);
} scenescore_plugin;

/* The one exported symbol. It must be visible in the library's dynamic symbol table, also when
   the plugin is compiled with -fvisibility=hidden: C plugins define it with
   SCENESCORE_PLUGIN_EXPORT, Swift ones with @_cdecl on a public function, Rust ones with
   #[no_mangle] pub extern "C". */
#if defined(__GNUC__) || defined(__clang__)
#define SCENESCORE_PLUGIN_EXPORT __attribute__((visibility("default")))
#else
#define SCENESCORE_PLUGIN_EXPORT
#endif
typedef const scenescore_plugin *(*scenescore_plugin_entry_fn)(void);
SCENESCORE_PLUGIN_EXPORT const scenescore_plugin *scenescore_plugin_entry(void);

#ifdef __cplusplus
}
#endif

#endif /* SCENESCORE_PLUGIN_H */
