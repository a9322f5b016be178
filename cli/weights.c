/*
 * weights.c - how every subcommand opens a --weights file: .pdparams (a pickle) or
 * safetensors, told apart by content, never by file name. A pickle starts with the
 * PROTO opcode 0x80; safetensors with an 8-byte header length and then '{'. Anything
 * else goes to the .pdparams reader, whose message says what is wrong at which offset.
 */
#include <stdio.h>

#include "cli.h"
#include "cspresnet_formats.h"

cspresnet_status cli_load_weights(const char *path, const cspresnet_load_options *opt,
                                  cspresnet_model **out, char *err, size_t err_size)
{
    unsigned char head[9];
    size_t got = 0;
    FILE *f = path ? fopen(path, "rb") : NULL;
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
