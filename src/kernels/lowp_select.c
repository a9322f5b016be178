/*
 * lowp_select.c - the bf16 and int8 kernels of this CPU, chosen once from cpuid
 * (__builtin_cpu_supports): the AVX-512 BF16 and VNNI tiles where the CPU has them,
 * the reference kernels everywhere else (and when asked for, as the oracle). A CPU may
 * have either extension without the other, hence four constant tables.
 */
#include <stddef.h>

#include "kernels/lowp_kernels.h"

#define REF_BF16 "ref", bf16_gemm_8x32__ref, bf16_pack_pairs__ref
#define REF_INT8 "ref", u8s8_gemm_8x32__ref, u8_pack_quads__ref

static const lowp_kernels ref_table = {REF_BF16, REF_INT8};

#if defined(__x86_64__) && defined(__GNUC__)
#define AVX512_BF16 "avx512bf16", bf16_gemm_8x32__avx512bf16, bf16_pack_pairs__avx512bf16
#define AVX512_INT8 "avx512vnni", u8s8_gemm_8x32__avx512vnni, u8_pack_quads__avx512
static const lowp_kernels both_table = {AVX512_BF16, AVX512_INT8};
static const lowp_kernels bf16_table = {AVX512_BF16, REF_INT8};
static const lowp_kernels int8_table = {REF_BF16, AVX512_INT8};
#endif

const lowp_kernels *lowp_kernels_select(int use_ref)
{
    if (use_ref)
        return &ref_table;
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    int base = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
    int bf16 = base && __builtin_cpu_supports("avx512bf16");
    int vnni = base && __builtin_cpu_supports("avx512vnni");
    if (bf16 || vnni)
        return bf16 && vnni ? &both_table : bf16 ? &bf16_table : &int8_table;
#endif
    return &ref_table;
}
