/*
 * fuzz_pdparams.c - libFuzzer harness for the .pdparams reader: the safe pickle
 * interpreter (src/io/pickle*.c), the state-dict builder (pdparams.c) and the float32
 * conversion of every array it accepts (array_convert.c).
 *
 * Built by `make fuzz` with clang -fsanitize=fuzzer,address,undefined; the same
 * function is replayed over tests/regress/ by tests/c/fuzz_replay.c in the normal
 * suite (gcc, and ASan+UBSan under `make asan`). Any crash, leak, sanitizer report or
 * error without a message is a bug. Inputs larger than FUZZ_MAX_INPUT are ignored so
 * that the fuzzer spends its time on structure, not on bulk data.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/pdparams.h"

#ifndef FUZZ_ENTRY
#define FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif
#define FUZZ_MAX_INPUT (1u << 20)

int FUZZ_ENTRY(const uint8_t *data, size_t size);

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    state_dict sd;
    error_buf err = {{0}};
    cspresnet_status st = pdparams_read_memory(data, size, "fuzz.pdparams", &sd, &err);
    if (st != CSPRESNET_OK) {
        if (err.text[0] == '\0')
            abort(); /* every refusal must say why */
        return 0;
    }
    for (size_t i = 0; i < sd.count; i++) {
        const array_entry *e = &sd.entries[i];
        if (state_dict_find(&sd, e->key) == NULL)
            abort(); /* every entry must be found by its key */
        float *dst = malloc((size_t)(e->numel ? e->numel : 1) * sizeof *dst);
        if (!dst)
            continue;
        error_buf cerr = {{0}};
        if (array_to_f32(e, dst, &cerr) != CSPRESNET_OK && cerr.text[0] == '\0')
            abort();
        free(dst);
    }
    state_dict_free(&sd);
    return 0;
}
