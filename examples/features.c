/*
 * features.c - a short program using libcspresnet's public API: build CSPResNet-s
 * (seeded random weights, or a .pdparams file given as argv[1]), turn an 8-bit RGB
 * picture into the network input the way PP-YOLOE+ does (bicubic resize to 320x320,
 * RGB/255), run the backbone and print the shape and mean of each feature map.
 *
 *   cc features.c $(pkg-config --cflags --libs cspresnet) -o features
 *   ./features [weights.pdparams]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cspresnet.h>

#define SRC_H 240
#define SRC_W 360
#define NET 320

int main(int argc, char **argv)
{
    char err[512];
    cspresnet_model *model = NULL;
    cspresnet_context *ctx = NULL;
    if (argc > 1) {
        cspresnet_load_options opt;
        cspresnet_load_options_init(&opt);
        if (cspresnet_model_load(argv[1], &opt, &model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    } else {
        cspresnet_config cfg;
        cspresnet_config_preset("s", &cfg);
        if (cspresnet_model_create(&cfg, 42, &model, err, sizeof err) != CSPRESNET_OK) {
            fprintf(stderr, "%s\n", err);
            return 1;
        }
    }
    /* a picture: a colour gradient (a real program decodes a JPEG/PNG here) */
    static uint8_t picture[SRC_H * SRC_W * 3], resized[NET * NET * 3];
    static float input[3 * NET * NET];
    for (int y = 0; y < SRC_H; y++)
        for (int x = 0; x < SRC_W; x++) {
            uint8_t *p = picture + (y * SRC_W + x) * 3;
            p[0] = (uint8_t)(255 * x / SRC_W);
            p[1] = (uint8_t)(255 * y / SRC_H);
            p[2] = (uint8_t)((x ^ y) & 0xff);
        }
    if (cspresnet_resize_cubic_u8(picture, SRC_H, SRC_W, 3, resized, NET, NET, err, sizeof err) != CSPRESNET_OK ||
        cspresnet_image_to_tensor(resized, NET, NET, CSPRESNET_PRE_PPYOLOE_PLUS, input) != CSPRESNET_OK) {
        fprintf(stderr, "pre-processing failed: %s\n", err);
        cspresnet_model_free(model);
        return 1;
    }
    if (cspresnet_context_create(model, 0, &ctx, err, sizeof err) != CSPRESNET_OK) {
        fprintf(stderr, "%s\n", err);
        cspresnet_model_free(model);
        return 1;
    }
    cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
    int n_out = 0, rc = 0;
    if (cspresnet_forward(ctx, input, 1, 3, NET, NET, outs, &n_out) != CSPRESNET_OK) {
        fprintf(stderr, "%s\n", cspresnet_context_last_error(ctx));
        rc = 1;
    }
    printf("cspresnet %s\n", CSPRESNET_VERSION);
    for (int i = 0; i < n_out; i++) {
        size_t n = (size_t)outs[i].n * outs[i].c * outs[i].h * outs[i].w;
        double sum = 0;
        for (size_t k = 0; k < n; k++)
            sum += outs[i].data[k];
        printf("stage %d stride %d: %d x %d x %d x %d, mean %.6f\n", outs[i].stage, outs[i].stride, outs[i].n,
               outs[i].c, outs[i].h, outs[i].w, sum / (double)n);
    }
    cspresnet_context_free(ctx);
    cspresnet_model_free(model);
    return rc;
}
