/* common.c - small helpers the subcommands share: output folders, the seeded input and
 * the kernel set named by the environment. */
#include <errno.h>
#include <stdlib.h>
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
    return context_create(model, cf->threads, cf->isa ? cf->isa : cli_isa(), cf->precision, out, err, err_size);
}

cspresnet_status cli_prepare(cspresnet_model *model, const common_flags *cf, char *err, size_t err_size)
{
    if (cf->precision == CSPRESNET_PRECISION_FP32)
        return CSPRESNET_OK;
    cspresnet_prepare_options opt;
    cspresnet_prepare_options_init(&opt);
    opt.isa = cf->isa ? cf->isa : cli_isa();
    opt.precision = (cspresnet_precision)cf->precision;
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
