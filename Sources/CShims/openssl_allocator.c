// OpenSSL's allocator, replaced once at start-up (CRYPTO_set_mem_functions) by one that keeps
// freed small blocks on per-thread free lists. OpenSSL 3.0 allocates small structures for every
// TLS record it writes or reads (WPACKET sub-packets among them), so each scored request cost
// three to four mallocs; with the cache, steady traffic reuses the same blocks. Blocks over
// 256 bytes go straight to malloc. A thread keeps at most 64 free blocks per size class and
// frees them when it exits.
#include "CShims.h"
#include <openssl/crypto.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { kClasses = 4, kSmallest = 32, kKeptPerClass = 64, kLarge = kClasses };

typedef struct Header {
    size_t sizeClass;  // 0..kClasses-1, or kLarge
    size_t pad;        // 16-byte aligned payload, as malloc's
} Header;

typedef struct ThreadCache {
    void *free[kClasses];
    unsigned count[kClasses];
} ThreadCache;

static __thread ThreadCache *cache;
static pthread_key_t cacheKey;
static pthread_once_t cacheKeyOnce = PTHREAD_ONCE_INIT;

static size_t class_bytes(size_t c) { return (size_t)kSmallest << c; }

static size_t class_for(size_t size) {
    for (size_t c = 0; c < kClasses; c++) if (size <= class_bytes(c)) return c;
    return kLarge;
}

static void release_cache(void *value) {
    ThreadCache *dying = value;
    for (size_t c = 0; c < kClasses; c++) {
        void *payload = dying->free[c];
        while (payload != NULL) {
            void *next = *(void **)payload;
            free((Header *)payload - 1);
            payload = next;
        }
    }
    free(dying);
    cache = NULL;
}

static void make_key(void) { pthread_key_create(&cacheKey, release_cache); }

static ThreadCache *thread_cache(void) {
    if (cache != NULL) return cache;
    pthread_once(&cacheKeyOnce, make_key);
    cache = calloc(1, sizeof(ThreadCache));
    if (cache != NULL) pthread_setspecific(cacheKey, cache);
    return cache;
}

static void *cached_malloc(size_t size, const char *file, int line) {
    (void)file; (void)line;
    size_t c = class_for(size);
    ThreadCache *tc = c == kLarge ? NULL : thread_cache();
    if (tc != NULL && tc->free[c] != NULL) {
        void *payload = tc->free[c];
        tc->free[c] = *(void **)payload;
        tc->count[c]--;
        return payload;
    }
    Header *h = malloc(sizeof(Header) + (c == kLarge ? size : class_bytes(c)));
    if (h == NULL) return NULL;
    h->sizeClass = c;
    return h + 1;
}

static void cached_free(void *ptr, const char *file, int line) {
    (void)file; (void)line;
    if (ptr == NULL) return;
    Header *h = (Header *)ptr - 1;
    size_t c = h->sizeClass;
    ThreadCache *tc = c == kLarge ? NULL : thread_cache();
    if (tc == NULL || tc->count[c] >= kKeptPerClass) { free(h); return; }
    *(void **)ptr = tc->free[c];
    tc->free[c] = ptr;
    tc->count[c]++;
}

static void *cached_realloc(void *ptr, size_t size, const char *file, int line) {
    if (ptr == NULL) return cached_malloc(size, file, line);
    if (size == 0) { cached_free(ptr, file, line); return NULL; }
    Header *h = (Header *)ptr - 1;
    if (h->sizeClass == kLarge) {
        Header *grown = realloc(h, sizeof(Header) + size);
        return grown == NULL ? NULL : grown + 1;
    }
    size_t capacity = class_bytes(h->sizeClass);
    if (size <= capacity) return ptr;
    void *moved = cached_malloc(size, file, line);
    if (moved == NULL) return NULL;
    memcpy(moved, ptr, capacity);
    cached_free(ptr, file, line);
    return moved;
}

int scenescore_openssl_use_thread_cache(void) {
    return CRYPTO_set_mem_functions(cached_malloc, cached_realloc, cached_free);
}
