/*
 * resize_cubic.c - bicubic resize of 8-bit interleaved images, bit-exact with
 * OpenCV's cv2.resize(..., interpolation=cv2.INTER_CUBIC), which PaddleDetection's
 * eval transform (Resize, interp=2) calls on the decoded uint8 RGB image.
 *
 * What OpenCV 4.x does for CV_8U and INTER_CUBIC (imgproc/src/resize.cpp):
 *   - scale = 1 / (dst / src) in double; source coordinate of output column dx is
 *     fx = (float)((dx + 0.5) * scale - 0.5), sx = floor(fx), fx -= sx (float);
 *   - Keys' cubic with A = -0.75 gives 4 float weights, each turned into a short
 *     by round(w * 2048) (INTER_RESIZE_COEF_BITS = 11);
 *   - horizontal pass: int sums of src * weight, sample indices clamped to the row;
 *   - vertical pass over 4 clamped rows: the SIMD part (the first floor(W*cn/8)*8 values
 *     of a row, from OpenCV's 16- and 8-wide loops on a 128-bit baseline build) converts to float, computes
 *     S0*b0 + (S1*b1 + (S2*b2 + S3*b3)) with b = beta / 2^22 and rounds half to even;
 *     the rest uses the scalar fixed-point path (sum + 2^21) >> 22. Both saturate to 0..255.
 * Reproducing both paths makes our output equal to cv2's; tests/test_images.py
 * checks it against cv2 (python3-opencv) on real photos and odd sizes.
 * Same size in and out is a plain copy, as in OpenCV.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "preprocess/preprocess.h"

#define COEF_BITS 11
#define COEF_SCALE (1 << COEF_BITS)
#define SIMD_TAIL 8 /* v_int16::nlanes of a 128-bit (SSE2/NEON) baseline build */

static void cubic_weights(float x, float w[4])
{
    const float A = -0.75f;
    w[0] = ((A * (x + 1) - 5 * A) * (x + 1) + 8 * A) * (x + 1) - 4 * A;
    w[1] = ((A + 2) * x - (A + 3)) * x * x + 1;
    w[2] = ((A + 2) * (1 - x) - (A + 3)) * (1 - x) * (1 - x) + 1;
    w[3] = 1.f - w[0] - w[1] - w[2];
}

/* saturate_cast<short>(float): round half to even (cvRound), then clamp. */
static int16_t to_short(float v)
{
    long r = lrintf(v);
    return (int16_t)(r < INT16_MIN ? INT16_MIN : r > INT16_MAX ? INT16_MAX : r);
}

static uint8_t to_u8(long v)
{
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Source index (floor of the mapped coordinate) and fixed-point weights of each
 * output position along one axis. */
static void axis_table(int src_size, int dst_size, int *ofs, int16_t *coef)
{
    double inv_scale = (double)dst_size / src_size;
    double scale = 1. / inv_scale;
    for (int d = 0; d < dst_size; d++) {
        float f = (float)((d + 0.5) * scale - 0.5);
        int s = (int)floorf(f);
        f -= (float)s;
        float w[4];
        cubic_weights(f, w);
        ofs[d] = s;
        for (int k = 0; k < 4; k++)
            coef[d * 4 + k] = to_short(w[k] * COEF_SCALE);
    }
}

static int clampi(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* One source row through the horizontal pass: dst_w * cn int sums. */
static void hpass(const uint8_t *row, int sw, int cn, int dw, const int *xofs, const int16_t *alpha,
                  int32_t *out)
{
    for (int dx = 0; dx < dw; dx++) {
        const int16_t *a = alpha + dx * 4;
        int idx[4];
        for (int j = 0; j < 4; j++)
            idx[j] = clampi(xofs[dx] - 1 + j, 0, sw - 1) * cn;
        for (int c = 0; c < cn; c++) {
            int32_t v = 0;
            for (int j = 0; j < 4; j++)
                v += (int32_t)row[idx[j] + c] * a[j];
            out[dx * cn + c] = v;
        }
    }
}

cspresnet_status cspresnet_resize_cubic_u8(const uint8_t *src, int sh, int sw, int channels,
                                           uint8_t *dst, int dh, int dw, char *err, size_t err_size)
{
    error_buf e;
    if (!src || !dst || sh < 1 || sw < 1 || dh < 1 || dw < 1 || channels < 1 || channels > 4 ||
        sh > 65536 || sw > 65536 || dh > 65536 || dw > 65536) {
        error_set(&e, CSPRESNET_ERR_ARGUMENT,
                  "resize: bad arguments (source %dx%d, target %dx%d, %d channels; sizes 1..65536, "
                  "1..4 channels)", sh, sw, dh, dw, channels);
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_ARGUMENT;
    }
    if (sh == dh && sw == dw) {
        memcpy(dst, src, (size_t)sh * sw * channels);
        return CSPRESNET_OK;
    }
    size_t row_vals = (size_t)dw * channels;
    int *xofs = malloc(sizeof(int) * (size_t)dw);
    int *yofs = malloc(sizeof(int) * (size_t)dh);
    int16_t *alpha = malloc(sizeof(int16_t) * 4 * (size_t)dw);
    int16_t *beta = malloc(sizeof(int16_t) * 4 * (size_t)dh);
    int32_t *rows = malloc(sizeof(int32_t) * 4 * row_vals); /* 4 horizontally resized rows */
    int row_src[4] = {-1, -1, -1, -1};                         /* source row held in each slot */
    if (!xofs || !yofs || !alpha || !beta || !rows) {
        free(xofs), free(yofs), free(alpha), free(beta), free(rows);
        error_set(&e, CSPRESNET_ERR_MEMORY, "resize: out of memory for a %dx%d target", dh, dw);
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_MEMORY;
    }
    axis_table(sw, dw, xofs, alpha);
    axis_table(sh, dh, yofs, beta);
    const float scale = 1.f / (COEF_SCALE * COEF_SCALE);
    size_t simd_end = row_vals - row_vals % SIMD_TAIL; /* OpenCV: 16-wide loop, then 8-wide */
    for (int dy = 0; dy < dh; dy++) {
        const int32_t *S[4];
        for (int k = 0; k < 4; k++) {
            int sy = clampi(yofs[dy] - 1 + k, 0, sh - 1);
            int slot = -1;
            for (int t = 0; t < 4; t++)
                if (row_src[t] == sy)
                    slot = t;
            if (slot < 0) { /* reuse a slot not needed by this output row */
                for (int t = 0; t < 4 && slot < 0; t++) {
                    int needed = 0;
                    for (int q = 0; q < 4; q++)
                        needed |= row_src[t] == clampi(yofs[dy] - 1 + q, 0, sh - 1);
                    if (!needed)
                        slot = t;
                }
                row_src[slot] = sy;
                hpass(src + (size_t)sy * sw * channels, sw, channels, dw, xofs, alpha,
                      rows + (size_t)slot * row_vals);
            }
            S[k] = rows + (size_t)slot * row_vals;
        }
        const int16_t *b = beta + dy * 4;
        uint8_t *out = dst + (size_t)dy * row_vals;
        float b0 = b[0] * scale, b1 = b[1] * scale, b2 = b[2] * scale, b3 = b[3] * scale;
        for (size_t x = 0; x < simd_end; x++) {
            float t = (float)S[3][x] * b3;
            float u = (float)S[2][x] * b2;
            t = u + t;
            u = (float)S[1][x] * b1;
            t = u + t;
            u = (float)S[0][x] * b0;
            t = u + t;
            long r = lrintf(t);
            r = r < INT16_MIN ? INT16_MIN : r > INT16_MAX ? INT16_MAX : r; /* v_pack to short */
            out[x] = to_u8(r);
        }
        for (size_t x = simd_end; x < row_vals; x++) {
            int64_t v = (int64_t)S[0][x] * b[0] + (int64_t)S[1][x] * b[1] + (int64_t)S[2][x] * b[2] +
                        (int64_t)S[3][x] * b[3];
            int64_t q = v + (1 << (2 * COEF_BITS - 1));
            q = q >= 0 ? q >> (2 * COEF_BITS) : -((-q + (1 << 2 * COEF_BITS) - 1) >> (2 * COEF_BITS));
            out[x] = to_u8((long)q);
        }
    }
    free(xofs), free(yofs), free(alpha), free(beta), free(rows);
    return CSPRESNET_OK;
}
