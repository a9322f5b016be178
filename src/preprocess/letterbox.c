/*
 * letterbox.c - resize keeping the aspect ratio, centred on a grey canvas.
 *
 * Geometry and fill follow PaddleDetection's LetterBoxResize (ppdet/data/transform/
 * operators.py): ratio = min(H/h, W/w); new size = round(w*ratio) x round(h*ratio)
 * (Python round, ties to even); top = round((H - nh)/2 - 0.1), left likewise; the
 * border is 127.5, which cv2.copyMakeBorder stores in uint8 as 128. One difference,
 * chosen so that both modes share one interpolation: the scaled image is made with
 * cv2 INTER_CUBIC (cspresnet_resize_cubic_u8) where LetterBoxResize uses INTER_AREA.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/status.h"
#include "preprocess/preprocess.h"

#define LETTERBOX_FILL 128

cspresnet_status cspresnet_letterbox_u8(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh,
                                        int dw, int box[4], char *err, size_t err_size)
{
    error_buf e;
    if (!src || !dst || sh < 1 || sw < 1 || dh < 1 || dw < 1 || sh > 65536 || sw > 65536 || dh > 65536 ||
        dw > 65536) {
        error_set(&e, CSPRESNET_ERR_ARGUMENT, "letterbox: bad arguments (source %dx%d, target %dx%d)", sh,
                  sw, dh, dw);
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_ARGUMENT;
    }
    double rh = (double)dh / sh, rw = (double)dw / sw, r = rh < rw ? rh : rw;
    int nw = (int)rint(sw * r), nh = (int)rint(sh * r);
    nw = nw < 1 ? 1 : nw > dw ? dw : nw;
    nh = nh < 1 ? 1 : nh > dh ? dh : nh;
    int top = (int)rint((dh - nh) / 2.0 - 0.1), left = (int)rint((dw - nw) / 2.0 - 0.1);
    top = top < 0 ? 0 : top;
    left = left < 0 ? 0 : left;
    uint8_t *scaled = malloc((size_t)nh * nw * 3);
    if (!scaled) {
        error_set(&e, CSPRESNET_ERR_MEMORY, "letterbox: out of memory for %dx%d", nh, nw);
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_MEMORY;
    }
    cspresnet_status st = cspresnet_resize_cubic_u8(src, sh, sw, 3, scaled, nh, nw, err, err_size);
    if (st != CSPRESNET_OK) {
        free(scaled);
        return st;
    }
    memset(dst, LETTERBOX_FILL, (size_t)dh * dw * 3);
    for (int y = 0; y < nh; y++)
        memcpy(dst + ((size_t)(y + top) * dw + left) * 3, scaled + (size_t)y * nw * 3, (size_t)nw * 3);
    free(scaled);
    if (box) {
        box[0] = top;
        box[1] = left;
        box[2] = nh;
        box[3] = nw;
    }
    return CSPRESNET_OK;
}
