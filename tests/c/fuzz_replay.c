/*
 * fuzz_replay.c - replays files through the libFuzzer harnesses in fuzz/ without
 * libFuzzer, so that the normal suite (gcc) and `make asan` run every file of the
 * crash-regression corpus tests/regress/ through exactly the fuzzed code.
 *
 * Usage: fuzz_replay pdparams|npy FILE...
 * Exit status: 0 when every file was processed (a refusal with a message is fine;
 * the harness aborts on anything else), 2 on bad usage or an unreadable file.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define FUZZ_ENTRY fuzz_pdparams_one
#include "../../fuzz/fuzz_pdparams.c"
#undef FUZZ_ENTRY
#undef FUZZ_MAX_INPUT
#define FUZZ_ENTRY fuzz_npy_one
#include "../../fuzz/fuzz_npy.c"

static int replay(int (*one)(const uint8_t *, size_t), const char *path)
{
    size_t n;
    uint8_t *buf = harness_read_file(path, &n);
    if (!buf) {
        fprintf(stderr, "fuzz_replay: cannot read %s\n", path);
        return 2;
    }
    one(buf, n);
    free(buf);
    printf("ok %s\n", path);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3 || (strcmp(argv[1], "pdparams") != 0 && strcmp(argv[1], "npy") != 0)) {
        fprintf(stderr, "usage: fuzz_replay pdparams|npy FILE...\n");
        return 2;
    }
    int (*one)(const uint8_t *, size_t) =
        strcmp(argv[1], "pdparams") == 0 ? fuzz_pdparams_one : fuzz_npy_one;
    for (int i = 2; i < argc; i++)
        if (replay(one, argv[i]) != 0)
            return 2;
    return 0;
}
