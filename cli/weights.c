/*
 * weights.c - how every subcommand opens a --weights file: .pdparams (a pickle) or
 * safetensors, told apart by content, never by file name. A pickle starts with the
 * PROTO opcode 0x80; safetensors with an 8-byte header length and then '{'. Anything
 * else goes to the .pdparams reader, whose message says what is wrong at which offset.
 *
 * The file is opened once. A regular file is then loaded by path (mapped, zero-copy
 * for safetensors); anything else (a pipe, /dev/stdin, a FIFO) is read once, whole,
 * into memory and parsed there: its first bytes are gone once read, and reopening a
 * FIFO whose writer has finished blocks forever.
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

cspresnet_status cli_load_weights(const char *path, const cspresnet_load_options *opt,
                                  cspresnet_model **out, char *err, size_t err_size)
{
    unsigned char head[CSPRESNET_STREAM_HEAD_BYTES];
    size_t got = 0;
    FILE *f = path ? fopen(path, "rb") : NULL;
    struct stat sb;
    if (f && fstat(fileno(f), &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISDIR(sb.st_mode)) {
        uint8_t *data = NULL;
        size_t size = 0;
        cspresnet_status st = cspresnet_stream_read_all(f, path, CSPRESNET_STREAM_MAX_BYTES, neither_format, &data,
                                                        &size, err, err_size);
        fclose(f);
        if (st != CSPRESNET_OK)
            return st;
        if (cspresnet_safetensors_sniff(data, size))
            st = cspresnet_model_load_safetensors_memory(data, size, path, opt, out, err, err_size);
        else
            st = cspresnet_model_load_memory(data, size, path, opt, out, err, err_size);
        free(data);
        return st;
    }
    if (f) {
        got = fread(head, 1, sizeof head, f);
        fclose(f);
    }
    if (cspresnet_safetensors_sniff(head, got))
        return cspresnet_model_load_safetensors(path, opt, out, err, err_size);
    return cspresnet_model_load(path, opt, out, err, err_size);
}

cspresnet_status cli_deploy(cspresnet_model **model, char *err, size_t err_size)
{
    if (cspresnet_model_is_deployed(*model))
        return CSPRESNET_OK;
    return cspresnet_model_deploy_replace(model, err, err_size);
}
