/*
 * image_png_write.c - 8-bit RGB to a PNG file with libpng, through the library's
 * atomic writer (temporary file, fsync, rename), so a failed or interrupted run never
 * leaves a truncated picture under the final name.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <png.h>

#include "cspresnet_io.h"
#include "image.h"

struct png_sink {
    cspresnet_atomic_file *file;
    char e[1024];
    int failed;
    char message[256];
};

static void sink_write(png_structp png, png_bytep data, png_size_t len)
{
    struct png_sink *s = png_get_io_ptr(png);
    if (!s->failed && cspresnet_atomic_file_write(s->file, data, len, s->e, sizeof s->e) != CSPRESNET_OK) {
        s->failed = 1;
        png_error(png, s->e);
    }
}

static void sink_flush(png_structp png)
{
    (void)png;
}

static void sink_error(png_structp png, png_const_charp msg)
{
    struct png_sink *s = png_get_error_ptr(png);
    snprintf(s->message, sizeof s->message, "%s", msg);
    png_longjmp(png, 1);
}

int png_write_rgb(const char *path, const uint8_t *rgb, int h, int w, char *err, size_t err_size)
{
    struct png_sink sink;
    memset(&sink, 0, sizeof sink);
    if (h < 1 || w < 1) {
        snprintf(err, err_size, "%s: cannot write an empty %dx%d picture", path, w, h);
        return -1;
    }
    if (cspresnet_atomic_file_open(path, &sink.file, sink.e, sizeof sink.e) != CSPRESNET_OK) {
        snprintf(err, err_size, "%s", sink.e);
        return -1;
    }
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, sink_error, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!png || !info) {
        png_destroy_write_struct(png ? &png : NULL, NULL);
        cspresnet_atomic_file_abort(sink.file);
        snprintf(err, err_size, "%s: out of memory", path);
        return -1;
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        cspresnet_atomic_file_abort(sink.file);
        snprintf(err, err_size, "%s: cannot write PNG: %s", path, sink.message);
        return -1;
    }
    png_set_write_fn(png, &sink, sink_write, sink_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < h; y++)
        png_write_row(png, (png_const_bytep)(rgb + (size_t)y * w * 3));
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    if (cspresnet_atomic_file_commit(sink.file, sink.e, sizeof sink.e) != CSPRESNET_OK) {
        snprintf(err, err_size, "%s", sink.e);
        return -1;
    }
    return 0;
}
