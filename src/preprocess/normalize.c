/*
 * normalize.c - 8-bit RGB (H x W x 3, interleaved) to the float NCHW input of the
 * backbone, with upstream's pre-processing presets (SPEC section 4):
 *   ppyoloe+  x * (float)(1/255)                                   (PP-YOLOE+)
 *   ppyoloe   ((x * (float)(1/255)) - mean) / std, mean/std in double (PP-YOLOE, legacy)
 *   imagenet  the same as ppyoloe (the ImageNet CSPResNetb_* backbones)
 *   none      x as a float in 0..255
 * The arithmetic copies PaddleDetection's NormalizeImage on a float32 array:
 * `im *= 1/255` multiplies by the float32 constant; `im -= mean; im /= std` compute in
 * double (mean and std are float64 arrays) and store float32 after each step.
 */
#include <string.h>

#include "preprocess/preprocess.h"

static const double MEAN[3] = {0.485, 0.456, 0.406};
static const double STD[3] = {0.229, 0.224, 0.225};

static const char *const NAMES[] = {"ppyoloe+", "ppyoloe", "imagenet", "none"};

const char *cspresnet_preprocess_name(cspresnet_preprocess pre)
{
    return (unsigned)pre < sizeof NAMES / sizeof NAMES[0] ? NAMES[pre] : NULL;
}

cspresnet_status cspresnet_preprocess_parse(const char *name, cspresnet_preprocess *out)
{
    if (!name || !out)
        return CSPRESNET_ERR_ARGUMENT;
    for (unsigned i = 0; i < sizeof NAMES / sizeof NAMES[0]; i++)
        if (strcmp(name, NAMES[i]) == 0) {
            *out = (cspresnet_preprocess)i;
            return CSPRESNET_OK;
        }
    if (strcmp(name, "ppyoloe_plus") == 0 || strcmp(name, "ppyoloeplus") == 0) {
        *out = CSPRESNET_PRE_PPYOLOE_PLUS;
        return CSPRESNET_OK;
    }
    return CSPRESNET_ERR_ARGUMENT;
}

cspresnet_status cspresnet_image_to_tensor(const uint8_t *rgb, int h, int w, cspresnet_preprocess pre,
                                           float *out)
{
    if (!rgb || !out || h < 1 || w < 1 || (unsigned)pre > CSPRESNET_PRE_NONE)
        return CSPRESNET_ERR_ARGUMENT;
    const float inv255 = (float)(1.0 / 255.0);
    size_t plane = (size_t)h * w;
    for (int c = 0; c < 3; c++) {
        float *o = out + c * plane;
        for (size_t i = 0; i < plane; i++) {
            float v = (float)rgb[i * 3 + c];
            switch (pre) {
            case CSPRESNET_PRE_PPYOLOE_PLUS:
                v = v * inv255;
                break;
            case CSPRESNET_PRE_PPYOLOE:
            case CSPRESNET_PRE_IMAGENET:
                v = v * inv255;
                v = (float)((double)v - MEAN[c]);
                v = (float)((double)v / STD[c]);
                break;
            case CSPRESNET_PRE_NONE:
                break;
            }
            o[i] = v;
        }
    }
    return CSPRESNET_OK;
}
