/*
 * visualize.c - the --visualize picture: the network input and, for each returned
 * stage, a heat map of the feature energy (channel-wise L2 norm) over it, side by
 * side under a label strip. Layout and colours are stated in image.h (visualize_write)
 * and checked pixel by pixel in tests/test_images.py.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"

static double clamp01(double v)
{
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

static void label(uint8_t *canvas, int ch, int cw, int x0, int panel_w, const char *text)
{
    static const uint8_t ink[3] = {0, 0, 0};
    int scale = font_text_width(text, 2) + 8 <= panel_w ? 2 : 1;
    int y = (VIS_LABEL_H - 7 * scale) / 2;
    font_draw(canvas, ch, cw, x0 + 4, y, x0 + panel_w, scale, text, ink);
}

int visualize_write(const char *path, const uint8_t *rgb, int h, int w, const cspresnet_output *outs,
                    int n_out, int index, char *err, size_t err_size)
{
    int cw = (1 + n_out) * w, ch = VIS_LABEL_H + h;
    uint8_t *canvas = malloc((size_t)cw * ch * 3);
    double *norm = NULL;
    if (!canvas) {
        snprintf(err, err_size, "%s: out of memory for a %dx%d picture", path, cw, ch);
        return -1;
    }
    memset(canvas, 255, (size_t)cw * VIS_LABEL_H * 3);
    char text[96];
    snprintf(text, sizeof text, "input %dx%d", w, h);
    label(canvas, ch, cw, 0, w, text);
    for (int y = 0; y < h; y++)
        memcpy(canvas + ((size_t)(VIS_LABEL_H + y) * cw) * 3, rgb + (size_t)y * w * 3, (size_t)w * 3);
    for (int r = 0; r < n_out; r++) {
        const cspresnet_output *o = &outs[r];
        size_t plane = (size_t)o->h * o->w;
        free(norm);
        norm = malloc(sizeof(double) * plane);
        if (!norm) {
            free(canvas);
            snprintf(err, err_size, "%s: out of memory", path);
            return -1;
        }
        const float *f = o->data + (size_t)index * o->c * plane;
        for (size_t i = 0; i < plane; i++)
            norm[i] = 0;
        for (int c = 0; c < o->c; c++)
            for (size_t i = 0; i < plane; i++)
                norm[i] += (double)f[c * plane + i] * f[c * plane + i];
        double lo = INFINITY, hi = -INFINITY;
        for (size_t i = 0; i < plane; i++) {
            norm[i] = sqrt(norm[i]);
            lo = norm[i] < lo ? norm[i] : lo;
            hi = norm[i] > hi ? norm[i] : hi;
        }
        int x0 = (1 + r) * w;
        for (int y = 0; y < h; y++) {
            int fy = y / o->stride < o->h ? y / o->stride : o->h - 1;
            uint8_t *row = canvas + ((size_t)(VIS_LABEL_H + y) * cw + x0) * 3;
            const uint8_t *in = rgb + (size_t)y * w * 3;
            for (int x = 0; x < w; x++) {
                int fx = x / o->stride < o->w ? x / o->stride : o->w - 1;
                double t = hi > lo ? (norm[(size_t)fy * o->w + fx] - lo) / (hi - lo) : 0.0;
                for (int k = 0; k < 3; k++) {
                    double heat = 255.0 * clamp01(3 * t - k);
                    row[x * 3 + k] = (uint8_t)floor(0.5 * in[x * 3 + k] + 0.5 * heat + 0.5);
                }
            }
        }
        snprintf(text, sizeof text, "stage %d  stride %d  %d ch", o->stage, o->stride, o->c);
        label(canvas, ch, cw, x0, w, text);
    }
    free(norm);
    int rc = png_write_rgb(path, canvas, ch, cw, err, err_size);
    free(canvas);
    return rc;
}
