// A per-session allocator for nghttp2 (nghttp2_mem): freed blocks are kept on free lists by
// size class and handed out again, so a session in steady state (streams opened and closed,
// headers copied, frames queued) stops calling malloc. One session lives on one event loop,
// so the pool needs no lock. Each size class keeps at most kCachedBytesPerClass of free
// blocks; the rest go back to malloc, so an idle connection holds at most ~64 KiB here.
#include "CShims.h"
#include <stdlib.h>
#include <string.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SCENESCORE_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SCENESCORE_SANITIZED 1
#endif

// Under a sanitizer nothing is cached: every free reaches the sanitizer's allocator, which
// then still sees a use after free inside nghttp2.
#ifdef SCENESCORE_SANITIZED
enum { kCachedBytesPerClass = 0 };
#else
enum { kCachedBytesPerClass = 8 * 1024 };
#endif
enum { kClasses = 8, kSmallest = 32, kLarge = kClasses };

typedef struct Block {
    size_t sizeClass;  // 0..kClasses-1, or kLarge for a plain malloc block
    size_t pad;        // keeps the payload 16-byte aligned, as malloc's is
} Block;

struct scenescore_nghttp2_pool {
    nghttp2_mem mem;
    void *free[kClasses];     // singly linked through each block's payload
    size_t cached[kClasses];  // bytes on each free list
};

static size_t class_bytes(size_t c) { return (size_t)kSmallest << c; }

static size_t class_for(size_t size) {
    for (size_t c = 0; c < kClasses; c++) if (size <= class_bytes(c)) return c;
    return kLarge;
}

static void *pool_malloc(size_t size, void *user) {
    scenescore_nghttp2_pool *pool = user;
    size_t c = class_for(size);
    if (c != kLarge && pool->free[c] != NULL) {
        void *payload = pool->free[c];
        pool->free[c] = *(void **)payload;
        pool->cached[c] -= class_bytes(c);
        return payload;
    }
    Block *block = malloc(sizeof(Block) + (c == kLarge ? size : class_bytes(c)));
    if (block == NULL) return NULL;
    block->sizeClass = c;
    return block + 1;
}

static void pool_free(void *ptr, void *user) {
    if (ptr == NULL) return;
    scenescore_nghttp2_pool *pool = user;
    Block *block = (Block *)ptr - 1;
    size_t c = block->sizeClass;
    if (c == kLarge || pool->cached[c] + class_bytes(c) > kCachedBytesPerClass) { free(block); return; }
    *(void **)ptr = pool->free[c];
    pool->free[c] = ptr;
    pool->cached[c] += class_bytes(c);
}

static void *pool_calloc(size_t count, size_t size, void *user) {
    if (size != 0 && count > SIZE_MAX / size) return NULL;
    void *p = pool_malloc(count * size, user);
    if (p != NULL) memset(p, 0, count * size);
    return p;
}

static void *pool_realloc(void *ptr, size_t size, void *user) {
    if (ptr == NULL) return pool_malloc(size, user);
    Block *block = (Block *)ptr - 1;
    if (block->sizeClass == kLarge) {
        if (class_for(size) != kLarge) {  // shrinking into a class: keep the large block
            return ptr;
        }
        Block *grown = realloc(block, sizeof(Block) + size);
        return grown == NULL ? NULL : grown + 1;
    }
    size_t capacity = class_bytes(block->sizeClass);
    if (size <= capacity) return ptr;
    void *moved = pool_malloc(size, user);
    if (moved == NULL) return NULL;
    memcpy(moved, ptr, capacity);
    pool_free(ptr, user);
    return moved;
}

scenescore_nghttp2_pool *scenescore_nghttp2_pool_new(void) {
    scenescore_nghttp2_pool *pool = calloc(1, sizeof(*pool));
    if (pool == NULL) return NULL;
    pool->mem = (nghttp2_mem){.mem_user_data = pool, .malloc = pool_malloc, .free = pool_free,
                              .calloc = pool_calloc, .realloc = pool_realloc};
    return pool;
}

nghttp2_mem *scenescore_nghttp2_pool_mem(scenescore_nghttp2_pool *pool) { return &pool->mem; }

void scenescore_nghttp2_pool_delete(scenescore_nghttp2_pool *pool) {
    if (pool == NULL) return;
    for (size_t c = 0; c < kClasses; c++) {
        void *payload = pool->free[c];
        while (payload != NULL) {
            void *next = *(void **)payload;
            free((Block *)payload - 1);
            payload = next;
        }
    }
    free(pool);
}
