/*
 * image_read.c - JPEG (libjpeg-turbo) and PNG (libpng) files to 8-bit RGB, the way
 * upstream's cv2.imread(path, cv2.IMREAD_COLOR) followed by BGR->RGB sees them,
 * turned upright by their EXIF orientation as cv2 does (JPEG APP1, PNG eXIf).
 * The whole file is read into memory first, its kind told by its first bytes, and
 * every libjpeg/libpng error comes back as a message (their longjmp error handlers
 * land here), never as an exit or a print.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jpeglib.h>
#include <png.h>

#include "image.h"

#define MAX_FILE_BYTES ((size_t)1 << 30)

static int fail(char *err, size_t n, const char *fmt, const char *path, const char *what)
{
    if (err && n)
        snprintf(err, n, fmt, path, what);
    return -1;
}

static int read_file(const char *path, uint8_t **data, size_t *size, char *err, size_t n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return fail(err, n, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0 || len < cap) {
            if (ferror(f)) {
                free(buf);
                fclose(f);
                return fail(err, n, "%s: read error: %s", path, strerror(errno));
            }
            if (feof(f))
                break;
            continue;
        }
        if (cap >= MAX_FILE_BYTES) {
            free(buf);
            fclose(f);
            return fail(err, n, "%s: %s", path, "larger than 1 GiB, refused");
        }
        uint8_t *grown = realloc(buf, cap * 2);
        if (!grown)
            free(buf);
        buf = grown;
        cap *= 2;
    }
    fclose(f);
    if (!buf)
        return fail(err, n, "%s: %s", path, "out of memory");
    *data = buf;
    *size = len;
    return 0;
}

static int check_size(const char *path, long h, long w, char *err, size_t n)
{
    if (h < 1 || w < 1 || h > IMAGE_MAX_SIDE || w > IMAGE_MAX_SIDE ||
        (unsigned long)h * (unsigned long)w > IMAGE_MAX_PIXELS) {
        char what[96];
        snprintf(what, sizeof what, "%ld x %ld pixels is outside 1..%d per side, %u pixels in all", w, h,
                 IMAGE_MAX_SIDE, IMAGE_MAX_PIXELS);
        return fail(err, n, "%s: %s", path, what);
    }
    return 0;
}

/* ---- JPEG ---- */

struct jpeg_fail {
    struct jpeg_error_mgr mgr;
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

static void jpeg_on_error(j_common_ptr cinfo)
{
    struct jpeg_fail *f = (struct jpeg_fail *)cinfo->err;
    f->mgr.format_message(cinfo, f->message);
    longjmp(f->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    struct jpeg_fail *f = (struct jpeg_fail *)cinfo->err;
    if (level < 0 && !f->message[0]) { /* a corrupt-data warning: keep the first one */
        f->mgr.format_message(cinfo, f->message);
        f->mgr.num_warnings++;
    }
}

/* ---- EXIF orientation: cv2.imread (IMREAD_COLOR) turns the picture upright ---- */

static unsigned rd16(const uint8_t *p, int le) { return le ? p[0] | (unsigned)p[1] << 8 : (unsigned)p[0] << 8 | p[1]; }
static uint32_t rd32(const uint8_t *p, int le)
{
    return le ? p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24
              : (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The Orientation tag (0x0112, SHORT) of IFD0 of a TIFF-structured EXIF block (a JPEG
 * APP1 after its "Exif\0\0", a PNG eXIf chunk). 1 (as stored) when absent, out of
 * 1..8 or when any offset would leave the block. */
static int exif_orientation(const uint8_t *t, size_t n)
{
    if (n < 8 || !((t[0] == 'I' && t[1] == 'I') || (t[0] == 'M' && t[1] == 'M')))
        return 1;
    int le = t[0] == 'I';
    uint32_t ifd = rd32(t + 4, le);
    if (rd16(t + 2, le) != 42 || ifd > n - 2)
        return 1;
    unsigned count = rd16(t + ifd, le);
    for (unsigned i = 0; i < count; i++) {
        size_t e = (size_t)ifd + 2 + 12 * (size_t)i;
        if (e + 12 > n)
            return 1;
        if (rd16(t + e, le) == 0x0112) {
            unsigned v = rd16(t + e + 8, le);
            return rd16(t + e + 2, le) == 3 && rd32(t + e + 4, le) >= 1 && v >= 1 && v <= 8 ? (int)v : 1;
        }
    }
    return 1;
}

/* Turns img upright as OpenCV's ExifTransform does: 2 mirror, 3 rotate 180, 4 flip,
 * 5 transpose, 6 rotate 90 clockwise, 7 transverse, 8 rotate 90 counter-clockwise. */
static int apply_orientation(image_rgb *img, int orientation)
{
    if (orientation < 2 || orientation > 8)
        return 0;
    const int h = img->h, w = img->w, swap = orientation >= 5;
    const int oh = swap ? w : h, ow = swap ? h : w;
    uint8_t *dst = malloc((size_t)h * w * 3);
    if (!dst)
        return -1;
    for (int y = 0; y < oh; y++)
        for (int x = 0; x < ow; x++) {
            int sy, sx;
            switch (orientation) {
            case 2: sy = y, sx = w - 1 - x; break;
            case 3: sy = h - 1 - y, sx = w - 1 - x; break;
            case 4: sy = h - 1 - y, sx = x; break;
            case 5: sy = x, sx = y; break;
            case 6: sy = h - 1 - x, sx = y; break;
            case 7: sy = h - 1 - x, sx = w - 1 - y; break;
            default: sy = x, sx = w - 1 - y; break; /* 8 */
            }
            memcpy(dst + ((size_t)y * ow + x) * 3, img->data + ((size_t)sy * w + sx) * 3, 3);
        }
    free(img->data);
    img->data = dst;
    img->h = oh;
    img->w = ow;
    return 0;
}

static int decode_jpeg(const char *path, const uint8_t *data, size_t size, image_rgb *out, char *err,
                       size_t n)
{
    struct jpeg_decompress_struct cinfo;
    struct jpeg_fail jerr;
    uint8_t *volatile pixels = NULL;
    memset(&jerr, 0, sizeof jerr);
    cinfo.err = jpeg_std_error(&jerr.mgr);
    jerr.mgr.error_exit = jpeg_on_error;
    jerr.mgr.emit_message = jpeg_on_message;
    if (setjmp(jerr.jump)) {
        jpeg_destroy_decompress(&cinfo);
        free(pixels);
        return fail(err, n, "%s: corrupt JPEG: %s", path, jerr.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)size);
    jpeg_save_markers(&cinfo, JPEG_APP0 + 1, 0xffff);
    jpeg_read_header(&cinfo, TRUE);
    int orientation = 1;
    for (jpeg_saved_marker_ptr mk = cinfo.marker_list; mk; mk = mk->next)
        if (mk->marker == JPEG_APP0 + 1 && mk->data_length >= 6 && memcmp(mk->data, "Exif\0\0", 6) == 0) {
            orientation = exif_orientation(mk->data + 6, mk->data_length - 6);
            break;
        }
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
        jpeg_destroy_decompress(&cinfo);
        return fail(err, n, "%s: %s", path, "CMYK JPEG files are not supported (convert to RGB)");
    }
    cinfo.out_color_space = JCS_RGB; /* gray is replicated into R, G, B */
    jpeg_start_decompress(&cinfo);
    if (check_size(path, cinfo.output_height, cinfo.output_width, err, n) != 0 || cinfo.output_components != 3) {
        if (cinfo.output_components != 3)
            fail(err, n, "%s: %s", path, "JPEG did not decode to 3 components");
        jpeg_destroy_decompress(&cinfo);
        return -1;
    }
    size_t stride = (size_t)cinfo.output_width * 3;
    pixels = malloc(stride * cinfo.output_height);
    if (!pixels) {
        jpeg_destroy_decompress(&cinfo);
        return fail(err, n, "%s: %s", path, "out of memory");
    }
    while (cinfo.output_scanline < cinfo.output_height) {
        JSAMPROW row = pixels + stride * cinfo.output_scanline;
        jpeg_read_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_decompress(&cinfo);
    int warned = jerr.mgr.num_warnings > 0;
    out->h = (int)cinfo.output_height;
    out->w = (int)cinfo.output_width;
    jpeg_destroy_decompress(&cinfo);
    if (warned) {
        free(pixels);
        return fail(err, n, "%s: corrupt JPEG: %s", path, jerr.message);
    }
    out->data = pixels;
    out->orientation = orientation;
    return 0;
}

/* ---- PNG ---- */

struct png_source {
    const uint8_t *data;
    size_t size, pos;
    char message[256];
};

static void png_on_error(png_structp png, png_const_charp msg)
{
    struct png_source *s = png_get_error_ptr(png);
    snprintf(s->message, sizeof s->message, "%s", msg);
    png_longjmp(png, 1);
}

/* libpng's warnings (an iCCP profile it ignores, such as the "known incorrect sRGB
 * profile" of scikit-image's photos; an unknown ancillary chunk) do not change the
 * pixels cv2 gives, so they are not printed; errors still fail the decode above. */
static void png_on_warning(png_structp png, png_const_charp msg)
{
    (void)png, (void)msg;
}

static void png_read_mem(png_structp png, png_bytep dst, png_size_t len)
{
    struct png_source *s = png_get_io_ptr(png);
    if (len > s->size - s->pos)
        png_error(png, "file is truncated");
    memcpy(dst, s->data + s->pos, len);
    s->pos += len;
}

static int decode_png(const char *path, const uint8_t *data, size_t size, image_rgb *out, char *err,
                      size_t n)
{
    struct png_source src = {data, size, 0, ""};
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, png_on_error, png_on_warning);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    uint8_t *volatile pixels = NULL;
    png_bytep *volatile rows = NULL;
    if (!png || !info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        return fail(err, n, "%s: %s", path, "out of memory");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_read_struct(&png, &info, NULL);
        free(pixels);
        free(rows);
        return fail(err, n, "%s: corrupt PNG: %s", path, src.message);
    }
    png_set_read_fn(png, &src, png_read_mem);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    png_uint_32 exif_size = 0;
    png_bytep exif = NULL;
    int orientation = png_get_eXIf_1(png, info, &exif_size, &exif) & PNG_INFO_eXIf
                          ? exif_orientation(exif, exif_size) : 1;
    int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
    if (check_size(path, (long)h, (long)w, err, n) != 0) {
        png_destroy_read_struct(&png, &info, NULL);
        return -1;
    }
    /* cv2's IMREAD_COLOR: 8 bits per channel RGB, alpha and tRNS ignored (never
     * composited). Alpha is stripped for every colour type, as OpenCV does: a palette
     * with a tRNS chunk expands to RGBA, and gray or RGB tRNS is not expanded at all. */
    if (type == PNG_COLOR_TYPE_PALETTE)
        png_set_palette_to_rgb(png);
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8)
        png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16)
        png_set_strip_16(png);
    png_set_strip_alpha(png);
    if (type == PNG_COLOR_TYPE_GRAY || type == PNG_COLOR_TYPE_GRAY_ALPHA)
        png_set_gray_to_rgb(png);
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    size_t stride = png_get_rowbytes(png, info);
    if (stride != (size_t)w * 3)
        png_error(png, "unexpected row layout after conversion to RGB");
    pixels = malloc(stride * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!pixels || !rows)
        png_error(png, "out of memory");
    for (png_uint_32 y = 0; y < h; y++)
        rows[y] = pixels + stride * y;
    png_read_image(png, rows);
    png_read_end(png, NULL);
    png_destroy_read_struct(&png, &info, NULL);
    free(rows);
    out->h = (int)h;
    out->w = (int)w;
    out->data = pixels;
    out->orientation = orientation;
    return 0;
}

int image_read(const char *path, image_rgb *out, char *err, size_t err_size)
{
    uint8_t *data;
    size_t size;
    memset(out, 0, sizeof *out);
    if (read_file(path, &data, &size, err, err_size) != 0)
        return -1;
    int rc = image_decode(path, data, size, out, err, err_size);
    free(data);
    return rc;
}

int image_decode(const char *path, const uint8_t *data, size_t size, image_rgb *out, char *err, size_t err_size)
{
    memset(out, 0, sizeof *out);
    int rc;
    static const uint8_t png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff)
        rc = decode_jpeg(path, data, size, out, err, err_size);
    else if (size >= 8 && memcmp(data, png_magic, 8) == 0)
        rc = decode_png(path, data, size, out, err, err_size);
    else
        rc = fail(err, err_size, "%s: %s", path,
                  size == 0 ? "empty file, not a JPEG or PNG image" : "not a JPEG or PNG image");
    if (rc == 0 && apply_orientation(out, out->orientation) != 0) {
        image_free(out);
        return fail(err, err_size, "%s: %s", path, "out of memory turning the picture upright");
    }
    return rc;
}

void image_free(image_rgb *img)
{
    if (img) {
        free(img->data);
        img->data = NULL;
    }
}

int image_has_image_suffix(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 || strcasecmp(dot, ".png") == 0);
}
