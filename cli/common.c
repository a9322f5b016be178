/* common.c - small helpers the subcommands share: output folders and the seeded input. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "cli.h"

int cli_make_dir(const char *path)
{
    return mkdir(path, 0777) == 0 || errno == EEXIST ? 0 : -1;
}

int cli_random_input(cspresnet_array *x, const int shape[4])
{
    x->ndim = 4;
    x->numel = 1;
    for (int d = 0; d < 4; d++) {
        x->shape[d] = shape[d];
        x->numel *= shape[d];
    }
    x->data = malloc((size_t)x->numel * sizeof(float));
    if (!x->data)
        return -1;
    uint32_t state = 12345u;
    for (int64_t i = 0; i < x->numel; i++) {
        state = state * 1664525u + 1013904223u;
        x->data[i] = (float)(state >> 8) / 16777216.0f;
    }
    return 0;
}
