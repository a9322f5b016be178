/*
 * safetensors_internal.h - names and limits shared by the safetensors reader and writer.
 */
#ifndef CSPRESNET_FORMATS_SAFETENSORS_INTERNAL_H
#define CSPRESNET_FORMATS_SAFETENSORS_INTERNAL_H

#include <jansson.h>
#include <stdint.h>

#include "core/status.h"
#include "cspresnet.h"
#include "io/pdparams.h"

#define ST_METADATA_KEY "__metadata__"
#define ST_META_VERSION "format_version"
#define ST_META_PRODUCER "producer"
#define ST_META_CHANNELS "channels"
#define ST_META_LAYERS "layers"
#define ST_META_ACT "act"
#define ST_META_LARGE_STEM "large_stem"
#define ST_META_ALPHA "alpha"
#define ST_META_RETURN_IDX "return_idx"
#define ST_META_DEPLOYED "deployed"
#define ST_META_SOURCE "source"
#define ST_META_DETECTOR "detector"  /* "1": a PP-YOLOE detector (backbone under "backbone.") */

#define ST_META_PRECISION "precision"        /* "fp32" (also when absent), "bf16" or "int8" */
#define ST_META_CALIBRATION "calibration"    /* int8: minmax or percentile */
#define ST_META_CALIB_SOURCE "calibration_source" /* int8: "random", the .npy, or the images */
#define ST_META_KERNELS "kernels"            /* bf16, int8: the kernel set whose rules chose the layers */
/* Tensor names an int8 file adds beside "<conv>.weight" (I8, OIHW): */
#define ST_WEIGHT_SCALE ".weight_scale"          /* F32 [OC] */
#define ST_INPUT_SCALE ".input_scale"            /* F32 [1] */
#define ST_INPUT_ZERO ".input_zero_point"        /* I32 [1] (F32 read too), 0..255 */
#define ST_BIAS_CORR ".bias_correction"          /* I32 [OC], optional (absent: 0) */

#define ST_DATA_ALIGN 64                 /* bytes: where the writer starts the data */
#define ST_MAX_HEADER (100u * 1000 * 1000) /* the reference implementation's limit */
#define ST_MAX_NDIM 8
/* A stream (pipe, FIFO) is read into memory up to the .pdparams reader's file limit. */
#define ST_MAX_STREAM_BYTES ((uint64_t)16 << 30)

/* One tensor for st_write_file: values in host order (F32 float, BF16 uint16_t, I8
 * int8_t, I32 int32_t), written little-endian. */
typedef struct st_out {
    const char *key;
    const char *dtype;         /* "F32", "BF16", "I8" or "I32" */
    int ndim;
    int64_t shape[ST_MAX_NDIM];
    long numel;
    const void *data;
} st_out;
/* safetensors_write.c: the architecture metadata of m (a new object), m's parameter i
 * as an F32 tensor, and a whole file written atomically (md stolen; tensors in order,
 * back to back, the data 64-byte aligned). */
json_t *st_metadata_json(const struct cspresnet_model *m, const char *source_name);
void st_out_of_param(const struct cspresnet_model *m, size_t i, st_out *o);
cspresnet_status st_write_file(const char *path, json_t *md, const st_out *t, size_t n, error_buf *e);

/* One tensor of a file being read (safetensors_read.c). */
typedef struct st_tensor {
    const char *name;             /* owned by the JSON tree */
    array_dtype dtype;            /* F32, F16, BF16, I8 or I32 */
    const char *dtype_name;       /* as in the header, for messages */
    int ndim;
    int64_t shape[ST_MAX_NDIM];
    uint64_t begin, end;          /* relative to the data section */
    int used;
} st_tensor;

/* What a file's __metadata__ says of its precision (safetensors_lowp_read.c). */
typedef struct st_lowp {
    cspresnet_precision precision;   /* fp32 when the file does not say */
    cspresnet_calibration method;    /* int8 */
    array_entry *view;               /* int8: the entries without the scale tensors, else NULL */
    size_t n_view;
} st_lowp;
/* Reads the precision from root's __metadata__ and checks the dtypes against it (I8 and
 * I32 only in int8 files, and only where an int8 file puts them); in an int8 file the
 * scale tensors are marked used and left out of q->view (free it). */
cspresnet_status st_lowp_begin(const char *path, json_t *root, st_tensor *t, const array_entry *entries, size_t n,
                               st_lowp *q, error_buf *e);
/* m loaded from the file (its parameters' keys under prefix): records the precision;
 * for int8, every I8 conv weight's scales checked and attached (qw, act_scale), its
 * arena values dequantized (q * scale), every scale tensor accounted for. */
cspresnet_status st_lowp_attach(const char *path, struct cspresnet_model *m, const char *prefix, const st_tensor *t,
                                const array_entry *entries, size_t n, const st_lowp *q, error_buf *e);

static inline int st_host_is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

#endif
