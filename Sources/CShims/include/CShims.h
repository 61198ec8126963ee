// One-line C wrappers for what Swift cannot import: OpenSSL's function-like macros, thread
// affinity and the like (the CPU-feature builtins are in CCPUFeatures). Each wrapper is
// prefixed `scenescore_` and does nothing else.
#ifndef SCENESCORE_CSHIMS_H
#define SCENESCORE_CSHIMS_H

#include <stdint.h>
#include <openssl/ssl.h>
#include <openssl/bio.h>
#include <nghttp2/nghttp2.h>

/// A per-session nghttp2 allocator that recycles freed blocks by size class (nghttp2_pool.c).
/// Delete it after the session that uses it (nghttp2_session_del frees through it).
typedef struct scenescore_nghttp2_pool scenescore_nghttp2_pool;
scenescore_nghttp2_pool *scenescore_nghttp2_pool_new(void);
nghttp2_mem *scenescore_nghttp2_pool_mem(scenescore_nghttp2_pool *pool);
void scenescore_nghttp2_pool_delete(scenescore_nghttp2_pool *pool);

/// Gives OpenSSL an allocator that reuses small freed blocks per thread (openssl_allocator.c).
/// Works only before OpenSSL's first allocation: call it first thing in main. 1 when installed.
int scenescore_openssl_use_thread_cache(void);

int scenescore_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version);
long scenescore_SSL_CTX_set_mode(SSL_CTX *ctx, long mode);
uint64_t scenescore_SSL_CTX_set_rfc9113_options(SSL_CTX *ctx);
long scenescore_SSL_CTX_set_session_cache_server(SSL_CTX *ctx);
long scenescore_BIO_set_mem_eof_return(BIO *bio, int value);
long scenescore_SSL_set_tlsext_host_name(SSL *ssl, const char *name);
int scenescore_TLS1_2_VERSION(void);
long scenescore_SSL_MODE_partial_write(void);

/// libFuzzer's entry for a program with a main of its own (libclang_rt.fuzzer_no_main, which only
/// the fuzz executable links: Package.swift, SCENESCORE_LIBFUZZER). Declared here because
/// libFuzzer ships no header.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

/// glibc's malloc_trim(0) when the heap holds more than `free_bytes_threshold` free bytes:
/// returns free heap pages to the OS (malloc.h is not a Swift module). Returns 1 if it trimmed.
int scenescore_malloc_trim_if_above(size_t free_bytes_threshold);

/// Lowers the calling thread's scheduling priority (nice `value`, Linux: per thread), so
/// background work yields the core to the event loops.
void scenescore_lower_thread_priority(int value);

/// Pins the calling thread to CPU `cpu` (Linux: sched_setaffinity, which Swift's Glibc does not
/// import; threads and processes it starts inherit the mask). Returns 0 or an errno value.
int scenescore_pin_thread_to_cpu(int cpu);

#endif
