/*
 * f32_gemm_ref.c - the reference GEMMs: the GEMM_MR x GEMM_NR micro-kernel of the
 * reference conv path (B packed in NR-wide strips), and f32_gemm__ref, the oracle of
 * the f32 GEMM family (gemm_fn's signature, any mr and nr).
 *
 * a: mr rows of kc weights (row stride lda); c: mr x nr output (row stride ldc).
 * Both sum each c element from 0 over k in ascending order, in float, then add it to
 * c (accumulate) or store it.
 */
#include "kernels/kernels.h"

void f32_gemm_4x16__ref(int kc, const float *a, long lda, const float *strip, float *c,
                        long ldc, int mr, int nr, int accumulate)
{
    float acc[GEMM_MR][GEMM_NR] = {{0}};
    if (mr == GEMM_MR) {
        const float *a0 = a, *a1 = a + lda, *a2 = a + 2 * lda, *a3 = a + 3 * lda;
        for (int k = 0; k < kc; k++) {
            const float *b = strip + (long)k * GEMM_NR;
            float w0 = a0[k], w1 = a1[k], w2 = a2[k], w3 = a3[k];
            for (int j = 0; j < GEMM_NR; j++) {
                acc[0][j] += w0 * b[j];
                acc[1][j] += w1 * b[j];
                acc[2][j] += w2 * b[j];
                acc[3][j] += w3 * b[j];
            }
        }
    } else {
        for (int i = 0; i < mr; i++) {
            const float *ai = a + i * lda;
            for (int k = 0; k < kc; k++) {
                const float *b = strip + (long)k * GEMM_NR;
                float w = ai[k];
                for (int j = 0; j < GEMM_NR; j++)
                    acc[i][j] += w * b[j];
            }
        }
    }
    for (int i = 0; i < mr; i++) {
        float *ci = c + i * ldc;
        if (accumulate)
            for (int j = 0; j < nr; j++)
                ci[j] += acc[i][j];
        else
            for (int j = 0; j < nr; j++)
                ci[j] = acc[i][j];
    }
}

/* c[i*ldc + j] (+)= sum_k a[i*lda + k] * b[k*ldb + j], i < mr, j < nr: one dot product
 * per element, nothing blocked or reordered. */
void f32_gemm__ref(int kc, const float *a, long lda, const float *b, long ldb, float *c, long ldc,
                   int mr, int nr, int accumulate)
{
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float sum = 0.0f;
            for (int k = 0; k < kc; k++)
                sum += a[i * lda + k] * b[k * ldb + j];
            c[i * ldc + j] = accumulate ? c[i * ldc + j] + sum : sum;
        }
}
