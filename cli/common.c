/* common.c - small helpers the subcommands share: output folders, the seeded input and
 * the kernel set named by the environment. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

int cli_make_dir(const char *path)
{
    return mkdir(path, 0777) == 0 || errno == EEXIST ? 0 : -1;
}

const char *cli_isa(void)
{
    const char *isa = getenv("CSPRESNET_ISA");
    return isa && isa[0] ? isa : NULL;
}

static cspresnet_status context_create(const cspresnet_model *model, int threads, const char *isa, int precision,
                                       cspresnet_context **out, char *err, size_t err_size)
{
    cspresnet_context_options opt;
    cspresnet_context_options_init(&opt);
    opt.threads = threads;
    opt.isa = isa;
    opt.precision = (cspresnet_precision)precision;
    return cspresnet_context_create_ex(model, &opt, out, err, err_size);
}

cspresnet_status cli_context_create(const cspresnet_model *model, int threads, cspresnet_context **out,
                                    char *err, size_t err_size)
{
    return context_create(model, threads, cli_isa(), CSPRESNET_PRECISION_FP32, out, err, err_size);
}

cspresnet_status cli_context_create_cf(const cspresnet_model *model, const common_flags *cf,
                                       cspresnet_context **out, char *err, size_t err_size)
{
    return context_create(model, cf->threads, cf->isa ? cf->isa : cli_isa(), cli_precision(model, cf), out, err,
                          err_size);
}

int cli_precision(const cspresnet_model *model, const common_flags *cf)
{
    return cf->precision_given ? cf->precision : (int)cspresnet_model_file_precision(model);
}

cspresnet_status cli_calibration_batch(const char *src, cspresnet_array *x, char *err, size_t err_size)
{
    if (strcmp(src, "random") != 0) {
        cspresnet_status s = cspresnet_npy_read(src, x, err, err_size);
        if (s == CSPRESNET_OK && (x->ndim != 4 || x->shape[1] != 3)) {
            snprintf(err, err_size, "%s: a calibration batch must be N x 3 x H x W, not %d-d with %lld channels",
                     src, x->ndim, x->ndim > 1 ? (long long)x->shape[1] : 0LL);
            cspresnet_array_free(x);
            return CSPRESNET_ERR_SHAPE;
        }
        return s;
    }
    const int shape[4] = {CLI_CALIB_RANDOM_N, 3, CLI_CALIB_RANDOM_HW, CLI_CALIB_RANDOM_HW};
    if (cli_random_input(x, shape) != 0) {
        snprintf(err, err_size, "out of memory for the calibration batch");
        return CSPRESNET_ERR_MEMORY;
    }
    uint64_t state = 0x9e3779b97f4a7c15ull;   /* not cli_random_input's values: held-out inputs stay unseen */
    for (int64_t i = 0; i < x->numel; i++) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        x->data[i] = (float)(state >> 40) / 16777216.0f;
    }
    return CSPRESNET_OK;
}

static cspresnet_status calibrate(cspresnet_model *model, const common_flags *cf, char *err, size_t err_size)
{
    if (!cf->calibration) {
        snprintf(err, err_size, "--precision int8 needs --calibration random|X.npy (or a quantized file from "
                                "cspresnet quantize)");
        return CSPRESNET_ERR_ARGUMENT;
    }
    cspresnet_array x = {0};
    cspresnet_status s = cli_calibration_batch(cf->calibration, &x, err, err_size);
    if (s != CSPRESNET_OK)
        return s;
    s = cspresnet_model_calibrate(model, x.data, (int)x.shape[0], (int)x.shape[2], (int)x.shape[3], 4,
                                  (cspresnet_calibration)cf->calib_method, cf->threads, cf->isa ? cf->isa : cli_isa(),
                                  err, err_size);
    cspresnet_array_free(&x);
    return s;
}

cspresnet_status cli_prepare(cspresnet_model *model, const common_flags *cf, char *err, size_t err_size)
{
    const int precision = cli_precision(model, cf);
    const int quantized = cspresnet_model_file_precision(model) == CSPRESNET_PRECISION_INT8;
    if (quantized && cf->calibration) {
        snprintf(err, err_size, "--calibration: the weights are an int8 file (cspresnet quantize) that holds its "
                                "scales; drop --calibration, or quantize the fp32 file again");
        return CSPRESNET_ERR_ARGUMENT;
    }
    if (precision == CSPRESNET_PRECISION_FP32)
        return CSPRESNET_OK;
    if (precision == CSPRESNET_PRECISION_INT8 && !quantized) {
        cspresnet_status s = calibrate(model, cf, err, err_size);
        if (s != CSPRESNET_OK)
            return s;
    }
    cspresnet_prepare_options opt;
    cspresnet_prepare_options_init(&opt);
    opt.isa = cf->isa ? cf->isa : cli_isa();
    opt.precision = (cspresnet_precision)precision;
    return cspresnet_model_prepare_ex(model, &opt, err, err_size);
}

int cli_random_input(cspresnet_array *x, const int shape[4])
{
    x->ndim = 4;
    x->numel = 1;
    for (int d = 0; d < 4; d++) {
        x->shape[d] = shape[d];
        x->numel *= shape[d];
    }
    x->data = malloc((size_t)x->numel * sizeof(float));
    if (!x->data)
        return -1;
    uint32_t state = 12345u;
    for (int64_t i = 0; i < x->numel; i++) {
        state = state * 1664525u + 1013904223u;
        x->data[i] = (float)(state >> 8) / 16777216.0f;
    }
    return 0;
}
