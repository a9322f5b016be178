/*
 * fuzz_npy.c - libFuzzer harness for the .npy reader (src/io/npy.c), through
 * npy_read_memory: the header parser, the shape/size checks and the stream path
 * (a memory stream has no file size, so the data buffer must grow with the bytes
 * present, never with what the header claims). A successful read is checked for
 * consistency (numel = product of shape) and written back to memory-free checks.
 *
 * Built by `make fuzz`; replayed over tests/regress/ by tests/c/fuzz_replay.c.
 */
#include <stdint.h>
#include <stdlib.h>

#include "io/npy.h"

#ifndef FUZZ_ENTRY
#define FUZZ_ENTRY LLVMFuzzerTestOneInput
#endif
#define FUZZ_MAX_INPUT (1u << 20)

int FUZZ_ENTRY(const uint8_t *data, size_t size);

int FUZZ_ENTRY(const uint8_t *data, size_t size)
{
    if (size > FUZZ_MAX_INPUT)
        return 0;
    npy_array a;
    error_buf err = {{0}};
    if (npy_read_memory(data, size, "fuzz.npy", &a, &err) != CSPRESNET_OK) {
        if (err.text[0] == '\0')
            abort(); /* every refusal must say why */
        return 0;
    }
    int64_t numel = 1;
    for (int i = 0; i < a.ndim; i++)
        numel *= a.shape[i];
    if (a.ndim < 0 || a.ndim > NPY_MAX_NDIM || numel != a.numel || (uint64_t)numel * 4 > size)
        abort(); /* the data must have come from the input */
    volatile float sink = 0.0f;
    for (int64_t i = 0; i < a.numel; i++)
        sink += a.data[i]; /* every value is readable */
    (void)sink;
    npy_array_free(&a);
    return 0;
}
