/*
 * cspresnet_formats.h - the optional weight-format module (build/libcspresnet_formats.a).
 *
 * safetensors (https://github.com/huggingface/safetensors) read and written natively.
 * This module parses JSON with Debian's jansson, so it is kept out of the core library
 * (which needs only libc, libm and pthreads): link it with
 *     build/libcspresnet_formats.a build/libcspresnet.a -ljansson -lm -lpthread
 *
 * File layout (the safetensors format, nothing added):
 *   8 bytes       N, the header length (little-endian uint64)
 *   N bytes       JSON: {"__metadata__": {str: str}, name: {"dtype": "F32",
 *                 "shape": [..], "data_offsets": [begin, end]}, ...}; written with
 *                 trailing spaces so that the data starts at a multiple of 64 bytes
 *   rest          the tensors' bytes, little-endian, C order, back to back in
 *                 Paddle's state_dict order (the format forbids gaps between them)
 * Tensor names are the upstream keys (deployed models: "<layer>.conv.weight" and
 * "<layer>.conv.bias", RepVGG blocks "...blocks.j.conv2.conv.*"). __metadata__ holds
 * the architecture as strings: format_version ("1"), producer, channels ("c0,..,c4"),
 * layers ("l0,..,l3"), act, large_stem ("0"/"1"), alpha ("0"/"1"), return_idx
 * ("1,2,3"), deployed ("0"/"1"), source (the file converted from) and, for a
 * detector, detector ("1"; its backbone's tensors are under "backbone.", the neck's and
 * head's are "neck.*" and "yolo_head.*", deployed or not, as cspresnet_model_deploy
 * names them; the neck and head architecture is read off their shapes).
 *
 * Thread-safety and errors as in cspresnet.h.
 */
#ifndef CSPRESNET_FORMATS_H
#define CSPRESNET_FORMATS_H

#include <stddef.h>
#include <stdint.h>

#include "cspresnet.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CSPRESNET_SAFETENSORS_VERSION "1" /* the __metadata__ format_version written */

/* Writes model (deployed or not) to path atomically. source_name (may be NULL) is
 * recorded as __metadata__ "source", e.g. the .pdparams file it came from. */
cspresnet_status cspresnet_model_save_safetensors(const cspresnet_model *model, const char *path,
                                                  const char *source_name, char *err,
                                                  size_t err_size);

/* bf16 and int8 files (docs/ARCHITECTURE.md, "bf16 and int8 files"): the deployed
 * network with each conv that runs in the low precision on the options' kernel set
 * (the rule prepare applies) stored in it, everything else F32:
 *   bf16: "<conv>.weight" BF16 (rounded to nearest even);
 *   int8: "<conv>.weight" I8 (the s8 values, OIHW), "<conv>.weight_scale" F32 [OC]
 *         (w = q * scale), "<conv>.input_scale" F32 [1], "<conv>.input_zero_point"
 *         I32 [1] (u8 = rne(x / scale) + zero, 0..255) and "<conv>.bias_correction"
 *         I32 [OC] (subtracted from the int32 sums; optional); biases F32.
 * __metadata__ adds precision ("bf16"/"int8"), kernels (the kernel set) and, for int8,
 * calibration (minmax/percentile) and calibration_source. The loaders read them back:
 * cspresnet_model_file_precision says which, and an int8 file's model runs int8 with
 * the stored values (no calibration); its arena holds q * scale, so it also runs fp32
 * or bf16 (the quantized network in float). */
typedef struct cspresnet_save_options {
    cspresnet_precision precision;   /* fp32 (init: the plain file), bf16 or int8 */
    const char *isa;                 /* kernel set whose rules pick the layers (NULL: the best this CPU runs) */
    const char *calibration_source;  /* int8: recorded as __metadata__ calibration_source */
    char *log;                       /* NULL, or receives the convs kept F32, comma separated */
    size_t log_size;
} cspresnet_save_options;
void cspresnet_save_options_init(cspresnet_save_options *opt);
/* Writes model (deployed; int8: calibrated) as opt->precision says, atomically. */
cspresnet_status cspresnet_model_save_safetensors_ex(const cspresnet_model *model, const char *path,
                                                     const char *source_name,
                                                     const cspresnet_save_options *opt, char *err,
                                                     size_t err_size);

/* Loads a safetensors file written by cspresnet_model_save_safetensors: the
 * architecture (and whether it is deployed) comes from __metadata__ and is checked
 * against every tensor's shape. A file without this library's __metadata__ (written
 * by another tool) has its architecture read off the shapes exactly as
 * cspresnet_model_load does (prefix, stem, widths, blocks, alpha; deployed when the
 * convs carry biases and there is no BN), non-backbone tensors skipped. Tensors may be
 * F32, F16 (converted as .pdparams float16 is) or BF16 (widened exactly). opt (may be NULL): act and return_idx given as
 * non-default values override the file's; expect, expect_large_stem, expect_alpha
 * are checks as for cspresnet_model_load; log receives one line (tensors loaded,
 * zero-copy or copied).
 *
 * The file is mapped read-only. When every tensor is F32 and float-aligned in it (always for
 * files this library writes) and the host is little-endian, the model's weights point
 * into the mapping (zero-copy) and the mapping lives until cspresnet_model_free;
 * otherwise the weights are copied and the file is unmapped before returning. As with
 * any mapped file, truncating the file in place while the model is alive is an error
 * (replacing it by rename, as every writer here does, is safe).
 *
 * Refused with a message naming the file, byte offset or tensor: a header length past
 * the end of the file, malformed JSON, a tensor whose offsets are out of range,
 * overlap another's or leave bytes unindexed, a dtype other than F32/F16/BF16 (I8 and I32
 * in int8 files, below), a tensor the
 * architecture needs that is missing (or one it does not know), metadata that
 * contradicts the shapes. Every size is checked against the file before allocating. */
cspresnet_status cspresnet_model_load_safetensors(const char *path,
                                                  const cspresnet_load_options *opt,
                                                  cspresnet_model **out, char *err,
                                                  size_t err_size);

/* The same from the bytes of a safetensors file in memory: the weights are copied (the
 * caller may free data once this returns). name stands for the file in messages. A
 * pipe or FIFO given to cspresnet_model_load_safetensors is read once, whole, into
 * memory (at most 16 GiB) and loaded this way. */
cspresnet_status cspresnet_model_load_safetensors_memory(const void *data, size_t size,
                                                         const char *name,
                                                         const cspresnet_load_options *opt,
                                                         cspresnet_model **out, char *err,
                                                         size_t err_size);

/* A PP-YOLOE / PP-YOLOE+ detector from a safetensors file (one that
 * cspresnet_model_save_safetensors wrote from a detector, deployed or not, or another
 * tool's with the same keys): cspresnet_model_load_detector's rules on the tensors'
 * names and shapes (backbone, neck and head architecture; deployed when the convs carry
 * biases and there is no BN; missing, mis-shaped and unexpected tensors named together),
 * with __metadata__'s act unless opt gives another. The weights are copied (no mapping
 * is kept). cspresnet_model_load_safetensors on such a file gives its backbone (the
 * "backbone." tensors; __metadata__ "detector" is "1"). */
cspresnet_status cspresnet_model_load_detector_safetensors(const char *path,
                                                           const cspresnet_load_options *opt,
                                                           cspresnet_model **out, char *err,
                                                           size_t err_size);
/* The same from the bytes of such a file in memory (copied; name stands for the file). */
cspresnet_status cspresnet_model_load_detector_safetensors_memory(const void *data, size_t size,
                                                                  const char *name,
                                                                  const cspresnet_load_options *opt,
                                                                  cspresnet_model **out, char *err,
                                                                  size_t err_size);

/* 1 if the first bytes of a file (head, n of them, n >= 9 to decide) look like
 * safetensors: a header length >= 2 followed by '{' at byte 8. Pickles (.pdparams)
 * start with 0x80 and never have '{' there (see safetensors_read.c). */
int cspresnet_safetensors_sniff(const unsigned char *head, size_t n);

#ifdef __cplusplus
}
#endif
#endif /* CSPRESNET_FORMATS_H */
