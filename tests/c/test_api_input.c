/*
 * test_api_input.c - what the public API says to a caller who hands it the wrong thing:
 * cspresnet_forward with 1- or 4-channel data (CSPRESNET_ERR_SHAPE and the channel
 * counts), cspresnet_model_load on a safetensors file (where to load it instead), and
 * cspresnet_model_load_memory giving the same parameters as cspresnet_model_load.
 *
 *   test_api_input SAFETENSORS_FILE PDPARAMS_FILE
 *
 * Prints each message it got on its own line ("forward c=4: ..."), "FAIL: ..." for
 * every check that does not hold, then harness.h's closing line (ending in OK); exit 1 on
 * any failure.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cspresnet.h"
#include "harness.h"


static void forward_channels(void)
{
    char err[512] = "";
    cspresnet_config cfg;
    cspresnet_model *m = NULL;
    cspresnet_context *ctx = NULL;
    CHECK(cspresnet_config_scaled(&cfg, 0.125, 0.33) == CSPRESNET_OK, "config");
    if (cspresnet_model_create(&cfg, 3, &m, err, sizeof err) != CSPRESNET_OK ||
        cspresnet_context_create(m, 1, &ctx, err, sizeof err) != CSPRESNET_OK) {
        CHECK(0, "cannot create the model or context: %s", err);
        cspresnet_model_free(m);
        return;
    }
    float *x = calloc(4 * 16 * 16, sizeof *x);
    cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
    int n_out = -1;
    const int channels[] = {1, 4, 0, 3};
    for (int i = 0; x && i < 4; i++) {
        int c = channels[i];
        cspresnet_status st = cspresnet_forward(ctx, x, 1, c, 16, 16, outs, &n_out);
        printf("forward c=%d: %s: %s\n", c, cspresnet_status_name(st), cspresnet_context_last_error(ctx));
        if (c == 3) {
            CHECK(st == CSPRESNET_OK && n_out == cfg.num_return, "3 channels refused: %s",
                  cspresnet_context_last_error(ctx));
            continue;
        }
        char want[96];
        snprintf(want, sizeof want, "input has %d channel%s, the model takes 3", c, c == 1 ? "" : "s");
        CHECK(st == CSPRESNET_ERR_SHAPE, "c=%d gave status %d, not CSPRESNET_ERR_SHAPE", c, (int)st);
        CHECK(strcmp(cspresnet_context_last_error(ctx), want) == 0, "c=%d: message '%s', want '%s'", c,
              cspresnet_context_last_error(ctx), want);
    }
    free(x);
    cspresnet_context_free(ctx);
    cspresnet_model_free(m);
}

static void load_safetensors_with_pickle_loader(const char *path)
{
    char err[1024] = "";
    cspresnet_model *m = (cspresnet_model *)&harness_failed; /* must become NULL */
    cspresnet_status st = cspresnet_model_load(path, NULL, &m, err, sizeof err);
    printf("model_load safetensors: %s: %s\n", cspresnet_status_name(st), err);
    CHECK(st == CSPRESNET_ERR_FORMAT, "status %d, not CSPRESNET_ERR_FORMAT", (int)st);
    CHECK(m == NULL, "*out not cleared");
    char want[1200];
    snprintf(want, sizeof want, "%s is a safetensors file", path);
    CHECK(strstr(err, want) != NULL, "message does not say '%s': %s", want, err);
    CHECK(strstr(err, "cspresnet_formats.h") && strstr(err, "cspresnet_model_load_safetensors"),
          "message does not name the formats module's loader: %s", err);
}

static void load_memory_matches_file(const char *path)
{
    char err[1024] = "";
    cspresnet_model *a = NULL, *b = NULL;
    CHECK(cspresnet_model_load(path, NULL, &a, err, sizeof err) == CSPRESNET_OK, "load %s: %s", path, err);
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long size = -1;
    if (f && fseek(f, 0, SEEK_END) == 0 && (size = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)size)) && fread(buf, 1, (size_t)size, f) != (size_t)size)
        size = -1;
    if (f)
        fclose(f);
    CHECK(size > 0 && buf, "cannot read %s", path);
    if (size > 0 && buf) {
        cspresnet_status st = cspresnet_model_load_memory(buf, (size_t)size, "bytes", NULL, &b, err, sizeof err);
        CHECK(st == CSPRESNET_OK, "load_memory: %s", err);
        memset(buf, 0xff, (size_t)size); /* the model must not point into the caller's bytes */
    }
    size_t n = a ? cspresnet_model_param_count(a) : 0, same = 0;
    CHECK(a && b && n == cspresnet_model_param_count(b), "parameter counts differ");
    for (size_t i = 0; a && b && i < n; i++) {
        const char *ka, *kb;
        int64_t sa[4], sb[4];
        int na, nb;
        const float *da, *db;
        cspresnet_model_param(a, i, &ka, &na, sa, &da, NULL);
        cspresnet_model_param(b, i, &kb, &nb, sb, &db, NULL);
        long numel = 1;
        for (int d = 0; d < na; d++)
            numel *= (long)sa[d];
        same += strcmp(ka, kb) == 0 && na == nb && memcmp(sa, sb, sizeof(int64_t) * (size_t)na) == 0 &&
                memcmp(da, db, sizeof(float) * (size_t)numel) == 0;
    }
    printf("model_load_memory: %zu of %zu parameters equal to the file's\n", same, n);
    CHECK(n > 0 && same == n, "%zu of %zu parameters differ", n - same, n);
    free(buf);
    cspresnet_model_free(a);
    cspresnet_model_free(b);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_api_input SAFETENSORS_FILE PDPARAMS_FILE\n");
        return 2;
    }
    forward_channels();
    load_safetensors_with_pickle_loader(argv[1]);
    load_memory_matches_file(argv[2]);
    return harness_done();
}
