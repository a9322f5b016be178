/*
 * fuzz_safetensors.c - libFuzzer harness for the safetensors reader (src/formats), the
 * optional module behind `--weights X.safetensors`. The reader takes a path (it maps the
 * file), so each input is written to a per-process temporary file first. A successful
 * load must describe a valid model (every parameter readable); a refusal must say why.
 *
 * Built by `make fuzz` with clang, the whole library, the formats module and jansson.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cspresnet.h"
#include "cspresnet_formats.h"

#define FUZZ_MAX_INPUT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (size > FUZZ_MAX_INPUT)
        return 0;
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/fuzz_safetensors.%ld", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort(); /* the harness itself failed */
    cspresnet_model *m = NULL;
    char err[1024] = "";
    if (cspresnet_model_load_safetensors(path, NULL, &m, err, sizeof err) != CSPRESNET_OK) {
        if (err[0] == '\0' || m != NULL)
            abort(); /* every refusal must say why, and leave nothing allocated */
        return 0;
    }
    volatile float sink = 0.0f;
    for (size_t i = 0; i < cspresnet_model_param_count(m); i++) {
        const float *p;
        int64_t shape[4];
        int ndim;
        if (cspresnet_model_param(m, i, NULL, &ndim, shape, &p, NULL) != CSPRESNET_OK)
            abort();
        int64_t numel = 1;
        for (int d = 0; d < ndim; d++)
            numel *= shape[d];
        for (int64_t j = 0; j < numel; j++)
            sink += p[j]; /* every value lies inside the mapping */
    }
    (void)sink;
    cspresnet_model_free(m);
    return 0;
}
