/*
 * weights.c - how every subcommand opens a --weights file: .pdparams (a pickle) or
 * safetensors, told apart by content, never by file name. A pickle starts with the
 * PROTO opcode 0x80; safetensors with an 8-byte header length and then '{'. Anything
 * else goes to the .pdparams reader, whose message says what is wrong at which offset.
 *
 * The file is opened once. A regular file is then loaded by path (mapped, zero-copy
 * for safetensors); anything else (a pipe, /dev/stdin, a FIFO) is read once, whole,
 * into memory and parsed there: its first bytes are gone once read, and reopening a
 * FIFO whose writer has finished blocks forever. cli_load_model tries the detector
 * loaders first and falls back to the backbone's on the same bytes when the file has no
 * PP-YOLOE neck.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "cspresnet_formats.h"
#include "cspresnet_io.h"

/* A stream that is neither format is not read to its end: the .pdparams reader then
 * names its first bytes. */
static int neither_format(const uint8_t *head, size_t n)
{
    return !(n && head[0] == 0x80) && !cspresnet_safetensors_sniff(head, n);
}

typedef cspresnet_status (*load_path_fn)(const char *path, const cspresnet_load_options *opt, cspresnet_model **out,
                                         char *err, size_t err_size);
typedef cspresnet_status (*load_memory_fn)(const void *data, size_t size, const char *name,
                                           const cspresnet_load_options *opt, cspresnet_model **out, char *err,
                                           size_t err_size);

/* The loaders of one kind of model: [0] .pdparams, [1] safetensors. */
typedef struct loaders {
    load_path_fn path[2];
    load_memory_fn memory[2];
} loaders;

/* The detector loaders' refusal of a file without a neck (a backbone's file, or a
 * detector checkpoint's backbone keys alone): such a file is then read as a backbone. */
static int no_detector(const char *err)
{
    return strstr(err, "no PP-YOLOE neck") || strstr(err, "not a detector checkpoint");
}

/* path by l's loader for its format; then, when l refused a file as no detector, by
 * fallback's (NULL: none). A stream is read once and both work on its bytes. */
static cspresnet_status load_with(const loaders *l, const loaders *fallback, const char *path,
                                  const cspresnet_load_options *opt, cspresnet_model **out, char *err,
                                  size_t err_size)
{
    unsigned char head[CSPRESNET_STREAM_HEAD_BYTES];
    size_t got = 0;
    FILE *f = path ? fopen(path, "rb") : NULL;
    struct stat sb;
    cspresnet_status st;
    if (f && fstat(fileno(f), &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode)) {
        uint8_t *data = NULL;
        size_t size = 0;
        st = cspresnet_stream_read_all(f, path, CSPRESNET_STREAM_MAX_BYTES, neither_format, &data, &size, err,
                                       err_size);
        fclose(f);
        if (st != CSPRESNET_OK)
            return st;
        int k = cspresnet_safetensors_sniff(data, size);
        st = l->memory[k](data, size, path, opt, out, err, err_size);
        if (st != CSPRESNET_OK && fallback && no_detector(err))
            st = fallback->memory[k](data, size, path, opt, out, err, err_size);
        free(data);
        return st;
    }
    if (f) {
        got = fread(head, 1, sizeof head, f);
        fclose(f);
    }
    int k = cspresnet_safetensors_sniff(head, got);
    st = l->path[k](path, opt, out, err, err_size);
    if (st != CSPRESNET_OK && fallback && no_detector(err))
        st = fallback->path[k](path, opt, out, err, err_size);
    return st;
}

static const loaders BACKBONE = {{cspresnet_model_load, cspresnet_model_load_safetensors},
                                 {cspresnet_model_load_memory, cspresnet_model_load_safetensors_memory}};
static const loaders DETECTOR = {
    {cspresnet_model_load_detector, cspresnet_model_load_detector_safetensors},
    {cspresnet_model_load_detector_memory, cspresnet_model_load_detector_safetensors_memory}};

cspresnet_status cli_load_weights(const char *path, const cspresnet_load_options *opt,
                                  cspresnet_model **out, char *err, size_t err_size)
{
    return load_with(&BACKBONE, NULL, path, opt, out, err, err_size);
}

cspresnet_status cli_load_detector(const char *path, const cspresnet_load_options *opt,
                                   cspresnet_model **out, char *err, size_t err_size)
{
    return load_with(&DETECTOR, NULL, path, opt, out, err, err_size);
}

cspresnet_status cli_load_model(const char *path, const cspresnet_load_options *opt, cspresnet_model **out,
                                char *err, size_t err_size)
{
    return load_with(&DETECTOR, &BACKBONE, path, opt, out, err, err_size);
}

cspresnet_status cli_deploy(cspresnet_model **model, char *err, size_t err_size)
{
    if (cspresnet_model_is_deployed(*model))
        return CSPRESNET_OK;
    if (cspresnet_model_file_precision(*model) == CSPRESNET_PRECISION_INT8) {
        /* folding BN into int8 weights would need their scales chosen again */
        snprintf(err, err_size, "--deploy: the weights are an int8 file of the un-deployed network; run it as it is, "
                                "or quantize the fp32 weights (cspresnet quantize deploys them)");
        return CSPRESNET_ERR_ARGUMENT;
    }
    return cspresnet_model_deploy_replace(model, err, err_size);
}
