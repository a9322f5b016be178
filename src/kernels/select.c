/*
 * select.c - chooses the kernel table once per context.
 *
 * "ref" is the reference path (the oracle: plain-C im2col + 4x16 GEMM, no fast
 * kernels). "avx512" (8x32 GEMM) and "avx2" (6x16 GEMM) are picked from cpuid
 * (__builtin_cpu_supports), best first; "generic" is the portable fast path for other
 * CPUs. All three run 3x3 stride-1 convs by Winograd F(4,3). CSPRESNET_ISA=ref|generic|
 * avx2|avx512 overrides; a name the CPU cannot run falls back to the best available.
 */
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/pointwise.h"

static const kernel_table ref_table = {
    .isa = "ref",
    .mean = f32_mean__ref,
    .im2col_panel = f32_im2col_panel__ref,
    .gemm_micro = f32_gemm_4x16__ref,
};

static const kernel_table generic_table = {
    .isa = "generic",
    .mean = f32_mean__ref,
    .im2col_panel = f32_im2col_panel__ref,
    .gemm_micro = f32_gemm_4x16__ref,
    .mr = 4,
    .nr = 16,
    .gemm = f32_gemm_4x16__generic,
    .bias_act = f32_bias_act__generic,
    .im2col_rows = f32_im2col_rows__generic,
    .wino_weight = f32_winograd43_weight__generic,
    .wino_input = f32_winograd43_input__generic,
    .wino_output = f32_winograd43_output__generic,
};

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_X86_KERNELS 1
static const kernel_table avx2_table = {
    .isa = "avx2",
    .mean = f32_mean__ref,
    .im2col_panel = f32_im2col_panel__ref,
    .gemm_micro = f32_gemm_4x16__ref,
    .mr = 6,
    .nr = 16,
    .gemm = f32_gemm_6x16__avx2,
    .bias_act = f32_bias_act__avx2,
    .im2col_rows = f32_im2col_rows__generic,
    .wino_weight = f32_winograd43_weight__generic,
    .wino_input = f32_winograd43_input__avx2,
    .wino_output = f32_winograd43_output__avx2,
};

static const kernel_table avx512_table = {
    .isa = "avx512",
    .mean = f32_mean__avx512,
    .im2col_panel = f32_im2col_panel__ref,
    .gemm_micro = f32_gemm_4x16__ref,
    .mr = 8,
    .nr = 32,
    .gemm = f32_gemm_8x32__avx512,
    .bias_act = f32_bias_act__avx512,
    .im2col_rows = f32_im2col_rows__avx512,
    .wino_weight = f32_winograd43_weight__avx512,
    .wino_input = f32_winograd43_input__avx512,
    .wino_output = f32_winograd43_output__avx512,
};

static int have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static int have_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
}
#endif

const kernel_table *kernel_table_select(const char *requested_isa)
{
    const char *want = requested_isa && requested_isa[0] ? requested_isa : "best";
    if (strcmp(want, "ref") == 0)
        return &ref_table;
    if (strcmp(want, "generic") == 0)
        return &generic_table;
#ifdef HAVE_X86_KERNELS
    if (strcmp(want, "avx2") == 0 && have_avx2())
        return &avx2_table;
    if (have_avx512())
        return &avx512_table;
    if (have_avx2())
        return &avx2_table;
#endif
    return &generic_table;
}
