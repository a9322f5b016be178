/*
 * detect_draw.c - the --visualize pictures of `detect`: boxes 2 px wide in a colour per
 * class, and "name score" labels in the 5x7 font (font5x7.c) on a strip of the box's
 * colour, drawn on the decoded image (boxes are in its pixels). Class names are COCO's
 * 80 unless --labels names others, one a line.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"

static const char *const COCO_NAMES[80] = {
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush"};

int detect_labels_load(const char *path, detect_labels *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    if (!path) {
        out->names = (char **)COCO_NAMES;
        out->count = 80;
        return 0;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, err_size, "--labels %s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0, got;
    char *text = malloc(cap + 1);
    while (text && (got = fread(text + len, 1, cap - len, f)) > 0)
        if ((len += got) == cap && cap < ((size_t)1 << 26)) {
            char *grown = realloc(text, 2 * cap + 1);
            if (!grown)
                free(text);
            text = grown, cap *= 2;
        }
    fclose(f);
    int lines = 0;
    for (size_t i = 0; text && i < len; i++)
        lines += text[i] == '\n' || i + 1 == len;
    out->names = text ? calloc((size_t)lines + 1, sizeof *out->names) : NULL;
    if (!out->names) {
        free(text);
        snprintf(err, err_size, "--labels %s: out of memory", path);
        return -1;
    }
    text[len] = '\0';
    out->text = text;
    for (char *p = text; *p && out->count < lines;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        size_t n = strlen(p);
        while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' '))
            p[--n] = '\0';
        out->names[out->count++] = p;
        p = nl ? nl + 1 : p + n;
    }
    if (out->count == 0) {
        snprintf(err, err_size, "--labels %s: no names in this file (one class name a line)", path);
        detect_labels_free(out);
        return -1;
    }
    return 0;
}

void detect_labels_free(detect_labels *l)
{
    if (l->text) {
        free(l->names);
        free(l->text);
    }
    memset(l, 0, sizeof *l);
}

/* A saturated colour per class: hues spread by the golden ratio. */
static void class_color(int label, uint8_t rgb[3])
{
    double hue = fmod(label * 0.618033988749895, 1.0) * 6.0, f = hue - floor(hue);
    double v = 240, p = v * 0.15, q = v * (1 - 0.85 * f), t = v * (1 - 0.85 * (1 - f));
    double c[6][3] = {{v, t, p}, {q, v, p}, {p, v, t}, {p, q, v}, {t, p, v}, {v, p, q}};
    int k = (int)hue % 6;
    for (int j = 0; j < 3; j++)
        rgb[j] = (uint8_t)lround(c[k][j]);
}

static void fill(uint8_t *rgb, int h, int w, int x0, int y0, int x1, int y1, const uint8_t c[3])
{
    x0 = x0 < 0 ? 0 : x0, y0 = y0 < 0 ? 0 : y0;
    x1 = x1 > w - 1 ? w - 1 : x1, y1 = y1 > h - 1 ? h - 1 : y1;
    for (int y = y0; y <= y1; y++)
        for (int x = x0; x <= x1; x++)
            memcpy(rgb + ((size_t)y * w + x) * 3, c, 3);
}

static int clampi(double v, int hi)
{
    return v < 0 ? 0 : v > hi ? hi : (int)lround(v);
}

void detect_draw(uint8_t *rgb, int h, int w, const float *rows, int n_rows, double threshold,
                 const detect_labels *labels)
{
    for (int r = 0; r < n_rows; r++) {
        const float *d = rows + 6 * r;
        if (!(d[1] >= threshold) || d[2] > w - 1 || d[4] < 0 || d[3] > h - 1 || d[5] < 0 || d[4] < d[2] ||
            d[5] < d[3])
            continue;
        int label = (int)d[0], x0 = clampi(d[2], w - 1), y0 = clampi(d[3], h - 1);
        int x1 = clampi(d[4], w - 1), y1 = clampi(d[5], h - 1);
        uint8_t c[3];
        class_color(label, c);
        fill(rgb, h, w, x0, y0, x1, y0 + 1, c); /* top, bottom, left, right: 2 px inside the box */
        fill(rgb, h, w, x0, y1 - 1, x1, y1, c);
        fill(rgb, h, w, x0, y0, x0 + 1, y1, c);
        fill(rgb, h, w, x1 - 1, y0, x1, y1, c);
        char text[160], num[16];
        snprintf(num, sizeof num, "%d", label);
        snprintf(text, sizeof text, "%s %.2f", label >= 0 && label < labels->count ? labels->names[label] : num,
                 d[1]);
        int tw = font_text_width(text, 1) + 4, ty = y0 >= 11 ? y0 - 11 : y0 + 2;
        fill(rgb, h, w, x0, ty, x0 + tw - 1, ty + 10, c);
        static const uint8_t ink[3] = {0, 0, 0};
        font_draw(rgb, h, w, x0 + 2, ty + 2, x0 + tw, 1, text, ink);
    }
}
