/*
 * train_select.c - the training kernel table that goes with a kernel table: the
 * AVX-512 point-wise kernels with the "avx512" table (chosen from cpuid or by
 * CSPRESNET_ISA in kernel_table_select, so the override reaches training too), the
 * reference kernels with every other table.
 */
#include <string.h>

#include "kernels/train_kernels.h"

static const train_kernel_table ref_train = {
    .isa = "ref",
    .bn_stats = f32_bn_stats__ref,
    .bn_act_apply = f32_bn_act_apply__ref,
    .bn_act_bwd_reduce = f32_bn_act_bwd_reduce__ref,
    .bn_act_bwd_apply = f32_bn_act_bwd_apply__ref,
    .im2col_gather = f32_im2col_rows_table__generic,
    .transpose = f32_transpose__ref,
};

#if defined(__x86_64__) && defined(__GNUC__)
static const train_kernel_table avx512_train = {
    .isa = "avx512",
    .bn_stats = f32_bn_stats__avx512,
    .bn_act_apply = f32_bn_act_apply__avx512,
    .bn_act_bwd_reduce = f32_bn_act_bwd_reduce__avx512,
    .bn_act_bwd_apply = f32_bn_act_bwd_apply__avx512,
    .im2col_shift = f32_im2col_shift__avx512,
    .im2col_gather = f32_im2col_rows_table__generic,
    .transpose = f32_transpose__avx512,
};
#endif

const train_kernel_table *train_kernel_table_for(const kernel_table *kt)
{
#if defined(__x86_64__) && defined(__GNUC__)
    if (kt && strcmp(kt->isa, "avx512") == 0)
        return &avx512_train;
#endif
    (void)kt;
    return &ref_train;
}
