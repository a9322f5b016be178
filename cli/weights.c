/*
 * weights.c - how every subcommand opens a --weights file. Today: .pdparams through
 * cspresnet_model_load. The safetensors work extends this one function (format told
 * apart by content, not by name), so that every command accepts both.
 */
#include "cli.h"

cspresnet_status cli_load_weights(const char *path, const cspresnet_load_options *opt,
                                  cspresnet_model **out, char *err, size_t err_size)
{
    return cspresnet_model_load(path, opt, out, err, err_size);
}
