/* SPDX-License-Identifier: MIT */
/* The README's library example (kept compiling and running by ctest). */
#include <stdio.h>
#include <tripool.h>

/* Runs on the engine's workers, in parallel, once per chunk. */
static int count_zero_bytes(void *arg, uint64_t index, uint64_t offset, const void *data,
                            size_t len) {
    _Atomic uint64_t *zeros = arg;
    const unsigned char *p = data;
    uint64_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += p[i] == 0;
    *zeros += n;
    return 0; /* < 0 stops the run with that error */
}

int main(int argc, char **argv) {
    tp_engine_opts o;
    tp_engine_opts_init(&o);
    o.chunk_size = 8 << 20; /* 8 MiB chunks */
    o.max_mem = 128 << 20;  /* never more than 128 MiB of buffers */
    o.max_open = 16;        /* never more than 16 open inputs */
    tp_engine *e;
    int err = tp_engine_create(&e, &o);
    if (err) {
        fprintf(stderr, "engine: %s\n", tp_strerror(err));
        return 1;
    }
    _Atomic uint64_t zeros = 0;
    err = argc > 1 ? tp_file_chunks(e, argv[1], count_zero_bytes, &zeros) : -EINVAL;
    if (err)
        fprintf(stderr, "%s\n", tp_strerror(err));
    else
        printf("%llu zero bytes\n", (unsigned long long)zeros);
    tp_engine_destroy(e);
    return err ? 1 : 0;
}
