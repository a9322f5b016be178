/*
 * fuzz_image.c - libFuzzer harness for the CLI's image decoder (cli/image_read.c:
 * libjpeg-turbo and libpng behind our size checks and error handlers). image_read takes
 * a path, so each input is written to a per-process temporary file first. A decoded
 * image must have sane dimensions and readable pixels; a refusal must say why.
 *
 * Built by `make fuzz` with clang, cli/image_read.c, -ljpeg -lpng.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "image.h"

#define FUZZ_MAX_INPUT (1u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char path[64];
    if (size > FUZZ_MAX_INPUT)
        return 0;
    if (!path[0])
        snprintf(path, sizeof path, "/tmp/fuzz_image.%ld.png", (long)getpid());
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
        abort();
    image_rgb img = {0};
    char err[512] = "";
    if (image_read(path, &img, err, sizeof err) != 0) {
        if (err[0] == '\0')
            abort();
        return 0;
    }
    if (img.h < 1 || img.w < 1 || !img.data)
        abort();
    volatile unsigned sink = 0;
    for (long i = 0; i < (long)img.h * img.w * 3; i++)
        sink += img.data[i];
    (void)sink;
    image_free(&img);
    return 0;
}
