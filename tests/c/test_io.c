/*
 * test_io.c - driver for tests/test_pickle.py and tests/test_npy.py (src/io).
 *
 * Usage:
 *   test_io pdparams FILE          one line per array entry, in file order:
 *                                    KEY DTYPE SHAPE NUMEL CHECKSUM
 *                                  DTYPE is '<' or '>' then numpy's name ("<f4", ">f8"),
 *                                  SHAPE a JSON list ("[2,3]", "[]" for 0-d), CHECKSUM the
 *                                  sum of the float32 values (double, %.9g) or
 *                                  "unconverted: <message>" when array_to_f32 refuses;
 *                                  then "skipped N" (non-array values).
 *   test_io pdparams-mem FILE      the same through pdparams_read_memory.
 *   test_io pdparams-values FILE KEY
 *                                  the float32 values of KEY in C order, one per line
 *                                  (%.9g, which round-trips float32).
 *   test_io npy-read FILE          "shape [..]", "numel N", then the values one per line.
 *   test_io npy-write OUT DIMS     writes OUT with DIMS ("2,3,4,5"; "" for 0-d) holding
 *                                  value[i] = ((i * 7919) % 1000) / 8 - 60 (exact in f32).
 * Exit status: 0 ok; 1 the library refused (its message on stderr, then a line
 * "status: <name>"); 2 bad usage.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "io/npy.h"
#include "io/pdparams.h"

static int fail(cspresnet_status st, const error_buf *err)
{
    fprintf(stderr, "%s\nstatus: %s\n", err->text, cspresnet_status_name(st));
    return 1;
}

static void print_shape(const int64_t *shape, int ndim)
{
    printf("[");
    for (int i = 0; i < ndim; i++)
        printf("%s%lld", i ? "," : "", (long long)shape[i]);
    printf("]");
}

static cspresnet_status read_dict(const char *path, int from_memory, state_dict *sd, error_buf *err)
{
    if (!from_memory)
        return pdparams_read_file(path, sd, err);
    size_t n;
    uint8_t *buf = harness_read_file(path, &n);
    if (!buf)
        return error_set(err, CSPRESNET_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    cspresnet_status st = pdparams_read_memory(buf, n, path, sd, err);
    free(buf);
    return st;
}

static int cmd_pdparams(const char *path, int from_memory)
{
    state_dict sd;
    error_buf err = {{0}};
    cspresnet_status st = read_dict(path, from_memory, &sd, &err);
    if (st != CSPRESNET_OK)
        return fail(st, &err);
    for (size_t i = 0; i < sd.count; i++) {
        const array_entry *e = &sd.entries[i];
        printf("%s %c%s ", e->key, e->big_endian ? '>' : '<', e->dtype_str);
        print_shape(e->shape, e->ndim);
        printf(" %lld ", (long long)e->numel);
        float *v = malloc((size_t)(e->numel ? e->numel : 1) * sizeof *v);
        if (!v) {
            printf("unconverted: out of memory\n");
            continue;
        }
        st = array_to_f32(e, v, &err);
        if (st != CSPRESNET_OK) {
            printf("unconverted: %s\n", err.text);
        } else {
            double sum = 0;
            for (int64_t j = 0; j < e->numel; j++)
                sum += v[j];
            printf("%.9g\n", sum);
        }
        free(v);
        if (state_dict_find(&sd, e->key) != e) {
            fprintf(stderr, "state_dict_find(%s) did not return its entry\n", e->key);
            state_dict_free(&sd);
            return 3;
        }
    }
    printf("skipped %zu\n", sd.skipped_non_array);
    state_dict_free(&sd);
    return 0;
}

static int cmd_values(const char *path, const char *key)
{
    state_dict sd;
    error_buf err = {{0}};
    cspresnet_status st = pdparams_read_file(path, &sd, &err);
    if (st != CSPRESNET_OK)
        return fail(st, &err);
    const array_entry *e = state_dict_find(&sd, key);
    if (!e) {
        fprintf(stderr, "%s: no key '%s'\n", path, key);
        state_dict_free(&sd);
        return 1;
    }
    float *v = malloc((size_t)(e->numel ? e->numel : 1) * sizeof *v);
    if (!v) {
        state_dict_free(&sd);
        return 1;
    }
    st = array_to_f32(e, v, &err);
    if (st == CSPRESNET_OK)
        for (int64_t j = 0; j < e->numel; j++)
            printf("%.9g\n", v[j]);
    free(v);
    state_dict_free(&sd);
    return st == CSPRESNET_OK ? 0 : fail(st, &err);
}

static int cmd_npy_read(const char *path)
{
    npy_array a;
    error_buf err = {{0}};
    cspresnet_status st = npy_read(path, &a, &err);
    if (st != CSPRESNET_OK)
        return fail(st, &err);
    printf("shape ");
    print_shape(a.shape, a.ndim);
    printf("\nnumel %lld\n", (long long)a.numel);
    for (int64_t i = 0; i < a.numel; i++)
        printf("%.9g\n", a.data[i]);
    npy_array_free(&a);
    return 0;
}

static int cmd_npy_write(const char *path, const char *dims)
{
    int64_t shape[NPY_MAX_NDIM + 1];
    int ndim = 0;
    const char *p = dims;
    while (*p) {
        char *end;
        long long v = strtoll(p, &end, 10);
        if (end == p || ndim > NPY_MAX_NDIM) {
            fprintf(stderr, "bad DIMS '%s'\n", dims);
            return 2;
        }
        shape[ndim++] = v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') {
            fprintf(stderr, "bad DIMS '%s'\n", dims);
            return 2;
        }
    }
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++)
        numel *= shape[i] > 0 ? shape[i] : 0;
    float *v = malloc((size_t)(numel > 0 ? numel : 1) * sizeof *v);
    if (!v)
        return 1;
    for (int64_t i = 0; i < numel; i++)
        v[i] = (float)((i * 7919) % 1000) / 8.0f - 60.0f;
    error_buf err = {{0}};
    cspresnet_status st = npy_write(path, v, ndim, shape, &err);
    free(v);
    return st == CSPRESNET_OK ? 0 : fail(st, &err);
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "pdparams") == 0)
        return cmd_pdparams(argv[2], 0);
    if (argc == 3 && strcmp(argv[1], "pdparams-mem") == 0)
        return cmd_pdparams(argv[2], 1);
    if (argc == 4 && strcmp(argv[1], "pdparams-values") == 0)
        return cmd_values(argv[2], argv[3]);
    if (argc == 3 && strcmp(argv[1], "npy-read") == 0)
        return cmd_npy_read(argv[2]);
    if (argc == 4 && strcmp(argv[1], "npy-write") == 0)
        return cmd_npy_write(argv[2], argv[3]);
    fprintf(stderr,
            "usage: test_io pdparams FILE | pdparams-mem FILE | pdparams-values FILE KEY |\n"
            "               npy-read FILE | npy-write OUT DIMS\n");
    return 2;
}
