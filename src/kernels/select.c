/*
 * select.c - chooses the kernel table once per context.
 *
 * Only the reference kernels exist so far; the AVX2 and AVX-512 tables join here
 * (chosen from cpuid, overridable with CSPRESNET_ISA) with the speed work.
 */
#include "kernels/kernels.h"

static const kernel_table ref_table = {
    .isa = "ref",
    .im2col_panel = f32_im2col_panel__ref,
    .gemm_micro = f32_gemm_4x16__ref,
};

const kernel_table *kernel_table_select(const char *requested_isa)
{
    (void)requested_isa;
    return &ref_table;
}
