#define _GNU_SOURCE  // sched_setaffinity and CPU_SET (before any system header)
#include "CShims.h"
#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

int scenescore_SSL_CTX_set_min_proto_version(SSL_CTX *ctx, int version) {
    return (int)SSL_CTX_set_min_proto_version(ctx, version);
}

long scenescore_SSL_CTX_set_mode(SSL_CTX *ctx, long mode) { return SSL_CTX_set_mode(ctx, mode); }

// RFC 9113 §9.2: no TLS compression, no renegotiation; prefer the server's AEAD order.
uint64_t scenescore_SSL_CTX_set_rfc9113_options(SSL_CTX *ctx) {
    return SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION |
                                        SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
}

long scenescore_SSL_CTX_set_session_cache_server(SSL_CTX *ctx) {
    return SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_SERVER);
}

long scenescore_BIO_set_mem_eof_return(BIO *bio, int value) {
    return BIO_set_mem_eof_return(bio, value);
}

long scenescore_SSL_set_tlsext_host_name(SSL *ssl, const char *name) {
    return SSL_set_tlsext_host_name(ssl, name);
}

int scenescore_TLS1_2_VERSION(void) { return TLS1_2_VERSION; }

// No SSL_MODE_RELEASE_BUFFERS: releasing the record buffers of an idle connection saves about
// 34 KiB each, but a connection with one request in flight goes idle between requests, so
// OpenSSL allocated and freed them again for every request (3 to 4 allocations each).
long scenescore_SSL_MODE_partial_write(void) {
    return SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER;
}

int scenescore_malloc_trim_if_above(size_t free_bytes_threshold) {
#ifdef __GLIBC__
    struct mallinfo2 info = mallinfo2();
    if (info.fordblks <= free_bytes_threshold) return 0;
    return malloc_trim(0);
#else
    (void)free_bytes_threshold;
    return 0;
#endif
}

void scenescore_lower_thread_priority(int value) {
#ifdef __linux__
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), value);
#else
    (void)value;
#endif
}

int scenescore_pin_thread_to_cpu(int cpu) {
#ifdef __linux__
    if (cpu < 0 || cpu >= CPU_SETSIZE) return EINVAL;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof set, &set) == 0 ? 0 : errno;
#else
    (void)cpu;
    return ENOSYS;
#endif
}
