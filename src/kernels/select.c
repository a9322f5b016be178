/*
 * select.c - the family configs and the kernel set of each ISA, chosen once per
 * context or trainer.
 *
 * "ref" is the reference path (the oracle: plain-C im2col panels + 4x16 micro-kernel,
 * no fast conv kernels). "avx512" (8x32 GEMM) and "avx2" (6x16 GEMM) are picked from
 * cpuid (__builtin_cpu_supports), best first; "generic" is the portable fast path for
 * other CPUs. All three run 3x3 stride-1 convs by Winograd F(4,3). A name the CPU
 * cannot run falls back to the best available. Each set names its training config
 * (the AVX-512 kernels in "avx512", the reference ones elsewhere) and its bf16/int8
 * configs (the AVX-512 BF16 / VNNI tiles in "avx512" where the CPU has those
 * extensions, which it may have apart, and the AMX bf16 and int8 tiles where the CPU
 * has them and the OS allows AMX: nine "avx512" sets).
 */
#define _DEFAULT_SOURCE  /* syscall(2), for the AMX permission */
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/lowp_kernels.h"
#include "kernels/pointwise.h"
#include "kernels/train_kernels.h"

/* ---- reference configs (every CPU; the oracle) ---- */
const f32_gemm_config f32_gemm_config_ref = {"f32-gemm-8x32-ref", 8, 32, f32_gemm__ref};
const f32_conv_config f32_conv_config_ref = {"f32-conv-ref", f32_im2col_rows__ref, f32_bias_act__ref};
const f32_winograd_config f32_winograd_config_ref = {"f32-winograd43-ref", f32_winograd43_weight__ref,
                                                     f32_winograd43_input__ref, f32_winograd43_output__ref};
const f32_reduce_config f32_reduce_config_ref = {"f32-reduce-ref", f32_mean__ref, f32_scale__ref, f32_window_max__ref,
                                                 f32_max_into__ref, f32_dfl_expect__ref};
const f32_train_config f32_train_config_ref = {
    .name = "f32-train-ref",
    .bn_stats = f32_bn_stats__ref,
    .bn_act_apply = f32_bn_act_apply__ref,
    .bn_act_bwd_reduce = f32_bn_act_bwd_reduce__ref,
    .bn_act_bwd_apply = f32_bn_act_bwd_apply__ref,
    .im2col_runs = f32_im2col_rows_runs__generic,
    .col2im_add = f32_col2im_add__generic,
    .im2col_gather = f32_im2col_rows_table__generic,
    .transpose = f32_transpose__ref,
};
const bf16_gemm_config bf16_gemm_config_ref = {"bf16-gemm-8x32-ref", 8, 32, bf16_gemm_8x32__ref,
                                               bf16_pack_pairs__ref, 1, 1, 1, NULL};
const u8s8_gemm_config u8s8_gemm_config_ref = {"u8s8-gemm-8x32-ref", 8, 32, u8s8_gemm_8x32__ref,
                                               u8_pack_quads__ref, 1, 1, NULL, u8_gather_quads__ref};

/* ---- portable fast path ---- */
static const f32_gemm_config gemm_generic = {"f32-gemm-4x16-generic", 4, 16, f32_gemm_4x16__generic};
static const f32_conv_config conv_generic = {"f32-conv-generic", f32_im2col_rows__generic,
                                             f32_bias_act__generic};
static const f32_winograd_config winograd_generic = {"f32-winograd43-generic", f32_winograd43_weight__generic,
                                                     f32_winograd43_input__generic,
                                                     f32_winograd43_output__generic};

#define REF_LOWP .bf16 = &bf16_gemm_config_ref, .int8 = &u8s8_gemm_config_ref

static const kernel_set ref_set = {
    .isa = "ref",
    .reduce = &f32_reduce_config_ref,
    .train = &f32_train_config_ref,
    REF_LOWP,
};
static const kernel_set generic_set = {
    .isa = "generic",
    .gemm = &gemm_generic,
    .conv = &conv_generic,
    .winograd = &winograd_generic,
    .reduce = &f32_reduce_config_ref,
    .train = &f32_train_config_ref,
    REF_LOWP,
};

#if defined(__x86_64__) && defined(__GNUC__)
#define HAVE_X86_KERNELS 1
#include <cpuid.h>
#include <pthread.h>
#ifdef __linux__
#include <sys/syscall.h>
#include <unistd.h>
#endif
static const f32_gemm_config gemm_avx2 = {"f32-gemm-6x16-avx2", 6, 16, f32_gemm_6x16__avx2};
static const f32_conv_config conv_avx2 = {"f32-conv-avx2", f32_im2col_rows__generic, f32_bias_act__avx2};
static const f32_winograd_config winograd_avx2 = {"f32-winograd43-avx2", f32_winograd43_weight__generic,
                                                  f32_winograd43_input__avx2, f32_winograd43_output__avx2};
static const kernel_set avx2_set = {
    .isa = "avx2",
    .gemm = &gemm_avx2,
    .conv = &conv_avx2,
    .winograd = &winograd_avx2,
    .reduce = &f32_reduce_config_ref,
    .train = &f32_train_config_ref,
    REF_LOWP,
};

static const f32_gemm_config gemm_avx512 = {"f32-gemm-8x32-avx512", 8, 32, f32_gemm_8x32__avx512};
static const f32_conv_config conv_avx512 = {"f32-conv-avx512", f32_im2col_rows__avx512, f32_bias_act__avx512};
static const f32_winograd_config winograd_avx512 = {"f32-winograd43-avx512", f32_winograd43_weight__avx512,
                                                    f32_winograd43_input__avx512,
                                                    f32_winograd43_output__avx512};
static const f32_reduce_config reduce_avx512 = {"f32-reduce-avx512", f32_mean__avx512, f32_scale__avx512,
                                                f32_window_max__avx512,
                                                f32_max_into__avx512, f32_dfl_expect__avx512};
static const f32_train_config train_avx512 = {
    .name = "f32-train-avx512",
    .bn_stats = f32_bn_stats__avx512,
    .bn_act_apply = f32_bn_act_apply__avx512,
    .bn_act_bwd_reduce = f32_bn_act_bwd_reduce__avx512,
    .bn_act_bwd_apply = f32_bn_act_bwd_apply__avx512,
    .im2col_shift = f32_im2col_shift__avx512,
    .im2col_runs = f32_im2col_runs__avx512,
    .col2im_add = f32_col2im_add__avx512,
    .im2col_gather = f32_im2col_rows_table__generic,
    .transpose = f32_transpose__avx512,
};
static const bf16_gemm_config bf16_avx512 = {"bf16-gemm-8x32-avx512bf16", 8, 32, bf16_gemm_8x32__avx512bf16,
                                             bf16_pack_pairs__avx512bf16, 1, 1, 1, NULL};
static const bf16_gemm_config bf16_amx = {"bf16-gemm-32x32-amx", 32, 32, bf16_gemm_32x32__amx,
                                          bf16_pack_pairs__avx512bf16, 16, 32, 0,
                                          bf16_taps_32x32__amx};
static const u8s8_gemm_config int8_avx512 = {"u8s8-gemm-8x32-avx512vnni", 8, 32, u8s8_gemm_8x32__avx512vnni,
                                             u8_pack_quads__avx512, 1, 1, u8s8_taps_32x32__avx512vnni,
                                             u8_gather_quads__avx512};
static const u8s8_gemm_config int8_amx = {"u8s8-gemm-32x32-amx", 32, 32, u8s8_gemm_32x32__amx,
                                          u8_pack_quads__avx512, 16, 32, u8s8_taps_32x32__amx,
                                          u8_gather_quads__avx512};

/* indexed [bf16 tile: reference, AVX-512 BF16, AMX][int8 tile: reference, AVX-512
 * VNNI, AMX] */
#define AVX512_F32                                                                       \
    .isa = "avx512", .gemm = &gemm_avx512, .conv = &conv_avx512, .winograd = &winograd_avx512, \
    .reduce = &reduce_avx512, .train = &train_avx512
#define AVX512_INT8(bf)                                                                  \
    {{AVX512_F32, .bf16 = bf, .int8 = &u8s8_gemm_config_ref}, {AVX512_F32, .bf16 = bf, .int8 = &int8_avx512}, \
     {AVX512_F32, .bf16 = bf, .int8 = &int8_amx}}
static const kernel_set avx512_sets[3][3] = {
    AVX512_INT8(&bf16_gemm_config_ref),
    AVX512_INT8(&bf16_avx512),
    AVX512_INT8(&bf16_amx),
};

/* AMX tiles (AMX-TILE, and the bf16 or int8 dot products: cpuid leaf 7 EDX bits 22
 * and 25, reported apart) with tile data enabled by the OS (XCR0 bits 17 and 18) and,
 * on Linux, the process's permission to use it (arch_prctl ARCH_REQ_XCOMP_PERM, asked
 * once, at the first kernel-set choice on an AMX CPU; Linux refuses it when a thread's
 * signal stack is too small for the tile state, and then the AVX-512 tiles are chosen).
 * Returns the AMX-BF16 bit | the AMX-INT8 bit << 1, 0 where tiles cannot run. */
static int have_amx(void)
{
    unsigned a, b, c, d;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    int kinds = (int)((d >> 22) & 1u) | (int)((d >> 25) & 1u) << 1;
    if (!(d & (1u << 24)) || !kinds)              /* AMX-TILE */
        return 0;
    __cpuid(1, a, b, c, d);
    if (!(c & (1u << 27)))                        /* OSXSAVE: xgetbv may run */
        return 0;
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17))
        return 0;
#ifdef __linux__
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0 ? kinds : 0;
#else
    return 0;
#endif
}

static pthread_once_t amx_once = PTHREAD_ONCE_INIT;
static int amx_usable;

static void amx_probe(void)
{
    amx_usable = have_amx();
}

static int have_avx2(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

static const kernel_set *avx512_set(void)
{
    __builtin_cpu_init();
    if (!(__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma")))
        return NULL;
    int bw = __builtin_cpu_supports("avx512bw");
    int bf16 = bw && __builtin_cpu_supports("avx512bf16");
    int vnni = bw && __builtin_cpu_supports("avx512vnni");
    pthread_once(&amx_once, amx_probe);   /* asked once: the answer holds for the process */
    int amx_bf16 = bf16 && (amx_usable & 1), amx_int8 = bw && (amx_usable & 2);
    return &avx512_sets[bf16 + amx_bf16][amx_int8 ? 2 : vnni];
}
#endif

const kernel_set *kernel_set_select(const char *isa)
{
    const char *want = isa && isa[0] ? isa : "best";
    if (strcmp(want, "ref") == 0)
        return &ref_set;
    if (strcmp(want, "generic") == 0)
        return &generic_set;
#ifdef HAVE_X86_KERNELS
    if (strcmp(want, "avx2") == 0 && have_avx2())
        return &avx2_set;
    const kernel_set *best = avx512_set();
    if (best)
        return best;
    if (have_avx2())
        return &avx2_set;
#endif
    return &generic_set;
}
