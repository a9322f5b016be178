/*
 * cspresnet.h - the one public header of libcspresnet.
 *
 * CSPResNet is the backbone of PP-YOLOE and PP-YOLOE+ (PaddleDetection,
 * ppdet/modeling/backbones/cspresnet.py). This library builds any variant of it,
 * reads the official .pdparams weight files without Python, and computes the
 * multi-scale feature maps in NCHW float32.
 *
 * The life of a program using it:
 *
 *     cspresnet_model *model;                      // weights, read-only once built
 *     cspresnet_load_options opt;
 *     cspresnet_load_options_init(&opt);           // act swish, return_idx 1,2,3
 *     char err[512];
 *     if (cspresnet_model_load("ppyoloe_plus_crn_s_80e_coco.pdparams", &opt,
 *                              &model, err, sizeof err) != CSPRESNET_OK)
 *         { fprintf(stderr, "%s\n", err); return 1; }
 *     cspresnet_context *ctx;                      // activations + threads
 *     cspresnet_context_create(model, 2, &ctx, err, sizeof err);
 *     cspresnet_output outs[CSPRESNET_MAX_OUTPUTS];
 *     int n_out;
 *     if (cspresnet_forward(ctx, image, 1, 3, 640, 640, outs, &n_out) != CSPRESNET_OK)
 *         fprintf(stderr, "%s\n", cspresnet_context_last_error(ctx));
 *     // outs[i].data holds stage outs[i].stage: n x channels x h x w, stride outs[i].stride
 *     cspresnet_context_free(ctx);
 *     cspresnet_model_free(model);
 *
 * Errors are values: every fallible function returns a cspresnet_status. Functions
 * that create a handle write a one-line message into a caller buffer (err, err_size;
 * both may be 0/NULL); functions on a handle keep the message on the handle
 * (cspresnet_context_last_error). Nothing here prints, exits or uses globals.
 *
 * Thread-safety: a cspresnet_model is immutable after it is created or loaded, so any
 * number of threads may use it at once (each through its own context). A
 * cspresnet_context must be used by one thread at a time.
 */
#ifndef CSPRESNET_H
#define CSPRESNET_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CSPRESNET_VERSION "0.1.0"
#define CSPRESNET_NUM_STAGES 4 /* stages of the backbone; stage i has stride 4 * 2^i */
#define CSPRESNET_MAX_OUTPUTS 4

typedef enum cspresnet_status {
    CSPRESNET_OK = 0,
    CSPRESNET_ERR_ARGUMENT = 1,      /* a NULL pointer, a bad size or flag from the caller */
    CSPRESNET_ERR_CONFIG = 2,        /* a configuration upstream cannot build or run */
    CSPRESNET_ERR_IO = 3,            /* open, read or write failed (message names the file) */
    CSPRESNET_ERR_FORMAT = 4,        /* a file is malformed (message names the offset or key) */
    CSPRESNET_ERR_UNSAFE = 5,        /* a pickle asked for a global or opcode we never run */
    CSPRESNET_ERR_WEIGHTS = 6,       /* missing, unexpected or mis-shaped tensors */
    CSPRESNET_ERR_UNSUPPORTED = 7,   /* a valid file feature we do not handle (dtype, order) */
    CSPRESNET_ERR_MEMORY = 8,        /* an allocation failed */
    CSPRESNET_ERR_NOT_FINITE = 9,    /* a loss or trained tensor became NaN or infinite (diverged) */
    CSPRESNET_ERR_SHAPE = 10         /* an input whose shape the model cannot take (channels) */
} cspresnet_status;

/* Short name of a status ("format error", ...). Never NULL; static storage. */
const char *cspresnet_status_name(cspresnet_status status);

/* Activations accepted by upstream's get_act_fn that this library implements. */
typedef enum cspresnet_act {
    CSPRESNET_ACT_SWISH = 0,   /* x * sigmoid(x) (also "silu"); upstream default */
    CSPRESNET_ACT_RELU,        /* max(x, 0); the t-relu variants */
    CSPRESNET_ACT_LEAKY_RELU,  /* x >= 0 ? x : 0.01 x (Paddle's default slope) */
    CSPRESNET_ACT_MISH,        /* x * tanh(softplus(x)) */
    CSPRESNET_ACT_HARDSWISH,   /* x * clip(x + 3, 0, 6) / 6 */
    CSPRESNET_ACT_GELU,        /* 0.5 x (1 + erf(x / sqrt 2)), Paddle's exact form */
    CSPRESNET_ACT_RELU6,       /* clip(x, 0, 6) */
    CSPRESNET_ACT_SIGMOID,     /* 1 / (1 + exp(-x)) */
    CSPRESNET_ACT_NONE,        /* identity */
    CSPRESNET_ACT_COUNT
} cspresnet_act;

/* "swish", "relu", ... ; NULL for an out-of-range value. */
const char *cspresnet_act_name(cspresnet_act act);
/* Parses a name ("silu" is accepted for swish, "identity"/"linear" for none).
 * Returns CSPRESNET_ERR_ARGUMENT for an unknown name. */
cspresnet_status cspresnet_act_parse(const char *name, cspresnet_act *out);

/* The architecture, after width/depth scaling. */
typedef struct cspresnet_config {
    int layers[CSPRESNET_NUM_STAGES];        /* BasicBlocks per stage */
    int channels[CSPRESNET_NUM_STAGES + 1];  /* stem width c0, then each stage's output */
    cspresnet_act act;                       /* activation used everywhere but the ESE gate */
    int use_large_stem;                      /* 1: three stem convs (every shipped config) */
    int use_alpha;                           /* 1: learnable RepVGG branch scale (PP-YOLOE+) */
    int return_idx[CSPRESNET_MAX_OUTPUTS];   /* stages returned by forward, ascending */
    int num_return;                          /* entries used in return_idx, 1..4 */
} cspresnet_config;

/* Fills upstream's constructor defaults scaled by width_mult and depth_mult:
 * channels = max(round(c * width_mult), 1) from [64,128,256,512,1024], layers =
 * max(round(l * depth_mult), 1) from [3,6,6,3], Python rounding (ties to even).
 * Large stem, no alpha, swish, return_idx 1,2,3. Multipliers must be > 0 and finite. */
cspresnet_status cspresnet_config_scaled(cspresnet_config *cfg, double width_mult,
                                         double depth_mult);

/* Presets of SPEC section 2: "t" (0.375/0.33, alpha on), "s", "m", "l", "x" (alpha off;
 * set use_alpha for PP-YOLOE+). Large stem, swish, return_idx 1,2,3.
 * Returns CSPRESNET_ERR_ARGUMENT for an unknown name. */
cspresnet_status cspresnet_config_preset(const char *name, cspresnet_config *cfg);

/* Checks that upstream can build and run cfg: positive channels and layers, an even
 * CSP mid width (channels[i]+channels[i+1])/2 in every stage, a non-empty ascending
 * return_idx within 0..3. The message names the stage and the numbers. */
cspresnet_status cspresnet_config_validate(const cspresnet_config *cfg, char *err,
                                           size_t err_size);

/* A model: the network's structure and all of its weights in one allocation. */
typedef struct cspresnet_model cspresnet_model;

/* Builds a model with deterministic pseudo-random weights (seeded), BN statistics at
 * identity-like values, alpha 1. Useful for summaries, benchmarks and training from
 * scratch. *out is owned by the caller (cspresnet_model_free). */
cspresnet_status cspresnet_model_create(const cspresnet_config *cfg, uint64_t seed,
                                        cspresnet_model **out, char *err, size_t err_size);

/* What the caller says about a weight file. The file decides channels, layers, large
 * stem and alpha; these fields are what a file cannot say, plus optional checks. */
typedef struct cspresnet_load_options {
    cspresnet_act act;                       /* default swish */
    int return_idx[CSPRESNET_MAX_OUTPUTS];   /* default 1,2,3 */
    int num_return;
    const cspresnet_config *expect;          /* NULL, or an architecture the file must match */
    int expect_large_stem;                   /* -1 any (default), 0 or 1 */
    int expect_alpha;                        /* -1 from the file (default); 0: the file must
                                                have no alpha; 1: use alpha, 1.0 where the
                                                file has none (upstream's rule) */
    char *log;                               /* optional buffer for notes such as "skipped
                                                312 neck and yolo_head tensors" */
    size_t log_size;
} cspresnet_load_options;

void cspresnet_load_options_init(cspresnet_load_options *opt);

/* Reads a .pdparams file (a pickle of key -> numpy array, protocols 2-5) without
 * executing anything from it, infers the architecture, and copies the weights in.
 * Backbone-only files and full detector checkpoints ("backbone." prefix) both work.
 * A pipe or FIFO (/dev/stdin) is read once, whole, into memory (at most 16 GiB).
 * *out is owned by the caller. On failure nothing is allocated and err says why. */
cspresnet_status cspresnet_model_load(const char *path, const cspresnet_load_options *opt,
                                      cspresnet_model **out, char *err, size_t err_size);

/* The same from the bytes of a .pdparams file in memory (read in place, not kept: the
 * caller may free data once this returns). name stands for the file in messages. */
cspresnet_status cspresnet_model_load_memory(const void *data, size_t size, const char *name,
                                             const cspresnet_load_options *opt,
                                             cspresnet_model **out, char *err, size_t err_size);

/* A PP-YOLOE / PP-YOLOE+ detector from a full checkpoint (.pdparams with
 * "backbone.*", "neck.*" and "yolo_head.*" keys): the backbone's architecture is read
 * off its keys as cspresnet_model_load does (opt's act and checks apply; return_idx is
 * ignored: the neck takes stages 1, 2, 3), the neck's widths and blocks, the class
 * count and reg_max off the neck's and head's shapes. "yolo_head.anchor_points",
 * "yolo_head.stride_tensor" and "aux_*" entries are ignored; missing, mis-shaped and
 * unexpected tensors are reported together, by key. A backbone-only file is refused
 * (cspresnet_model_load still reads a detector file's backbone alone). Such a model
 * runs through a normal context: cspresnet_detector_forward, or cspresnet_forward
 * (which then returns the two outputs described there). A detector converted to
 * safetensors loads with cspresnet_model_load_detector_safetensors (cspresnet_formats.h).
 * cspresnet_model_deploy works
 * on it; a deployed detector's state dict (every conv with a bias, no BN: the deployed
 * model's keys) loads as a deployed detector. Training a detector is not supported yet
 * (CSPRESNET_ERR_UNSUPPORTED). */
cspresnet_status cspresnet_model_load_detector(const char *path, const cspresnet_load_options *opt,
                                               cspresnet_model **out, char *err, size_t err_size);

/* The same from the bytes of a .pdparams file in memory (read, not kept). */
cspresnet_status cspresnet_model_load_detector_memory(const void *data, size_t size, const char *name,
                                                      const cspresnet_load_options *opt,
                                                      cspresnet_model **out, char *err, size_t err_size);

/* 1 when the model is a detector (cspresnet_model_load_detector), 0 for a backbone. */
int cspresnet_model_is_detector(const cspresnet_model *model);

/* Deploy mode, as upstream's convert_to_deploy and then some: every BN is folded into
 * its conv (t = weight / sqrt(_variance + eps); kernel * t; bias - _mean * weight /
 * sqrt(_variance + eps)), each RepVGG block becomes one 3x3 conv with kernel
 * K3 + alpha * pad(K1) and bias b3 + alpha * b1, computed in float32 in upstream's order,
 * and the activation (and the BasicBlock shortcut) run in the conv's epilogue. The
 * result is a new model (the caller owns it); `model` is unchanged. A deployed model's
 * parameters are "<layer>.conv.weight" and "<layer>.conv.bias" for every conv layer
 * (RepVGG blocks: "...blocks.j.conv2.conv.*", upstream's deploy names) and the ESE fc.
 * A detector deploys whole: the neck's RepVGG blocks ("neck....convs.j.conv2.conv.*", no
 * alpha there) and PP-YOLOE+ t's head RepVGG convs ("yolo_head.stem_*.i.conv.conv.*")
 * merged, every neck and head BN folded, the class branch's residual in the stem_cls
 * conv's epilogue; pred_cls, pred_reg, proj_conv and the ESEAttn fc are kept as they are.
 * Its forward gives the same boxes and scores within float rounding. */
cspresnet_status cspresnet_model_deploy(const cspresnet_model *model, cspresnet_model **out,
                                        char *err, size_t err_size);

/* The same fold, replacing *model by its deployed form and freeing the original. When
 * the model owns its weights (loaded from .pdparams, created, or copied from a file),
 * each layer's memory is handed back as soon as it is folded, so the peak is about one
 * copy of the weights instead of two. On failure *model is unchanged (every check and
 * allocation happens before anything is released) and err says why. */
cspresnet_status cspresnet_model_deploy_replace(cspresnet_model **model, char *err, size_t err_size);

int cspresnet_model_is_deployed(const cspresnet_model *model);

/* Writes the model's weights as a .pdparams file that Python's pickle.load (with numpy)
 * reads into the dict a paddle.save of the backbone (or of the whole detector, for a
 * detector model: "backbone.*", "neck.*", "yolo_head.*") gives: the upstream keys in
 * Paddle's state_dict order, each a float32 C-order numpy.ndarray, then the entry
 * "StructuredToParameterName@@" (dict str -> str of Paddle-style internal names).
 * Pickle protocol 4 (paddle.save's default since Paddle 2.1), written atomically.
 * A deployed model is refused (CSPRESNET_ERR_ARGUMENT): upstream has no such layout. */
cspresnet_status cspresnet_model_save_pdparams(const cspresnet_model *model, const char *path,
                                               char *err, size_t err_size);

/* Packs the model's weights once for the kernels of `isa` (NULL: the best this CPU
 * runs; as cspresnet_context_isa names them) so that forwards do not transform them
 * again: today the Winograd transform of every 3x3 stride-1 conv, 4x those weights.
 * Layers are packed in network order while the total stays within budget_bytes (0
 * frees what an earlier call packed). Call it before creating contexts: the packed
 * data is then read-only and shared like the weights; contexts whose kernels differ
 * ignore it. Results are bit-identical with and without it. */
cspresnet_status cspresnet_model_prepare(cspresnet_model *model, const char *isa, size_t budget_bytes,
                                         char *err, size_t err_size);
/* Bytes the last cspresnet_model_prepare packed (0: none). */
size_t cspresnet_model_prepared_bytes(const cspresnet_model *model);

/* The number format convolutions multiply in. fp32 everywhere by default. bf16: the
 * weights are rounded to bfloat16 (nearest even) once, when the model is prepared for
 * bf16, activations while the convs pack them, and every product is accumulated in
 * fp32; bias, activation, residual, BN, ESE and the detector's post-processing stay
 * fp32, and so does the 3-channel stem conv. With AMX every other conv runs in bf16;
 * without it, 3x3 stride-1 convs keep fp32 Winograd F(4,3) where the kernels have it (4x
 * fewer multiplies than a direct conv: more than bf16's 2x; docs/ARCHITECTURE.md). */
typedef enum cspresnet_precision {
    CSPRESNET_PRECISION_FP32 = 0,
    CSPRESNET_PRECISION_BF16 = 1,
    CSPRESNET_PRECISION_INT8 = 2   /* post-training quantization: cspresnet_model_calibrate */
} cspresnet_precision;

/* "fp32" | "bf16" | "int8" -> *out; CSPRESNET_ERR_ARGUMENT for anything else. */
cspresnet_status cspresnet_precision_parse(const char *name, cspresnet_precision *out);
const char *cspresnet_precision_name(cspresnet_precision p);
/* The precision the model's weight file was written for: bf16 or int8 for a file that
 * cspresnet_model_save_safetensors_ex wrote so (cspresnet_formats.h), else fp32. */
cspresnet_precision cspresnet_model_file_precision(const cspresnet_model *model);

typedef struct cspresnet_prepare_options {
    const char *isa;               /* as cspresnet_model_prepare's isa */
    size_t budget_bytes;           /* as cspresnet_model_prepare's (init: SIZE_MAX) */
    cspresnet_precision precision; /* the contexts it is for (init: fp32) */
} cspresnet_prepare_options;

void cspresnet_prepare_options_init(cspresnet_prepare_options *opt);

/* cspresnet_model_prepare for contexts of opt->precision. bf16: every conv that runs in
 * bf16 gets its weights in bfloat16 (about half their fp32 bytes); int8: see below; the
 * convs that stay fp32 run as in an fp32 context (no Winograd U packed: it is 4x the
 * 3x3 weights), and a conv left out by the budget runs in fp32. Where the
 * weights are a read-only file mapping (a safetensors file), the fp32 pages of each conv
 * packed for bf16 or int8 are handed back to the system (they are read from the file
 * again if used), so the model then holds mainly the packed copy. Contexts made with the
 * same isa and precision use it. */
cspresnet_status cspresnet_model_prepare_ex(cspresnet_model *model, const cspresnet_prepare_options *opt,
                                            char *err, size_t err_size);

/* int8 (post-training quantization). A conv runs in int8 when the model holds an
 * activation scale for its input: its weights are quantized per output channel,
 * symmetric (w_scale[oc] = max|w[oc]| / 127, q = rne(w / w_scale) in -127..127), its
 * input per tensor with the calibrated scale s and zero point z (u8 = clamp(rne(x / s)
 * + z, 0, 255), standing for u8 - z), the products summed exactly in int32 and
 * dequantized by w_scale[oc] * s in the GEMM's epilogue, before the fp32 bias,
 * activation and residual. Every other op stays fp32. Calibration runs the fp32
 * network on inputs and records, per conv input, its min and max (min-max) or also a
 * histogram (percentile: the 1 - q and q quantiles, q = CSPRESNET_CALIB_PERCENTILE_Q,
 * clipping the rare extremes); [lo, hi] widened to hold 0 becomes s = (hi - lo) / 255,
 * z = rne(-lo / s). Min-max measured better on our networks (docs/ARCHITECTURE.md,
 * "int8"). The network's first conv (3 input channels, the stem) is left fp32, and so
 * are the 3x3 stride-1 convs a kernel set without an int8 tap form runs by Winograd
 * F(4,3) (avx2, generic: its 4x fewer multiplies beat their int8 tiles; the avx512 set
 * with AVX-512 VNNI or AMX-INT8 and the "ref" set run them int8). Calibrate
 * the form that will run (after cspresnet_model_deploy), then
 * cspresnet_model_prepare_ex with precision int8, then contexts of precision int8. */
typedef enum cspresnet_calibration {
    CSPRESNET_CALIB_MINMAX = 0,
    CSPRESNET_CALIB_PERCENTILE = 1
} cspresnet_calibration;
#define CSPRESNET_CALIB_PERCENTILE_Q 0.9999

/* "minmax" | "percentile" -> *out; CSPRESNET_ERR_ARGUMENT for anything else. */
cspresnet_status cspresnet_calibration_parse(const char *name, cspresnet_calibration *out);
const char *cspresnet_calibration_name(cspresnet_calibration m);

/* Runs the fp32 network (threads as cspresnet_context_create's, isa as its options')
 * on `inputs` (n images of 3 x h x w, NCHW, in batches of at most `batch`) and stores
 * one activation scale per conv input on the model, replacing earlier ones and any
 * int8 preparation. Not thread-safe against contexts using the model. */
cspresnet_status cspresnet_model_calibrate(cspresnet_model *model, const float *inputs, int n, int h, int w,
                                           int batch, cspresnet_calibration method, int threads, const char *isa,
                                           char *err, size_t err_size);
/* Conv nodes of the model and, for node i < count, its name (the module path), whether
 * it has an activation scale (runs int8) and the scale. Returns the number of conv
 * nodes; 0 before calibration. */
int cspresnet_model_quant_layer(const cspresnet_model *model, int i, const char **name, int *int8, float *scale);

/* The model's architecture. Valid until cspresnet_model_free. */
const cspresnet_config *cspresnet_model_config(const cspresnet_model *model);

/* Named parameters in Paddle's state_dict order (upstream key names). Returns the
 * count; for i < count fills the key (static to the model), shape, element count and
 * a read-only pointer to the data, and whether Paddle trains it (BN _mean/_variance
 * are non-trainable). Any pointer may be NULL. */
size_t cspresnet_model_param_count(const cspresnet_model *model);
cspresnet_status cspresnet_model_param(const cspresnet_model *model, size_t i,
                                       const char **key, int *ndim, int64_t shape[4],
                                       const float **data, int *trainable);

/* Frees the model. The caller must free every context made from it first. NULL is ok. */
void cspresnet_model_free(cspresnet_model *model);

/* A context runs a model: it owns the activation arena (planned once per input
 * shape and reused), scratch space and a pool of threads. */
typedef struct cspresnet_context cspresnet_context;

/* threads: 1 or more worker threads (0 means the number of online CPUs). The model
 * must outlive the context. *out is owned by the caller. The kernels are the best
 * this CPU runs (as cspresnet_context_create_ex with isa NULL). */
cspresnet_status cspresnet_context_create(const cspresnet_model *model, int threads,
                                          cspresnet_context **out, char *err,
                                          size_t err_size);

/* How a context runs. The library reads no environment variable: a program that
 * wants one (the CLI reads CSPRESNET_ISA) fills isa from it. */
typedef struct cspresnet_context_options {
    int threads;        /* worker threads, 0 (default) = the number of online CPUs */
    const char *isa;    /* kernel set: NULL or "" (default) = the best this CPU runs
                           (from cpuid: "avx512", then "avx2", then "generic");
                           "ref" = the plain-C reference kernels (the oracle, slow);
                           "generic" = the portable fast kernels; "avx2", "avx512".
                           A name this CPU cannot run, or an unknown one, falls back
                           to the best available; cspresnet_context_isa says which
                           set was chosen. The string is read during the call only. */
    cspresnet_precision precision;  /* fp32 (default), bf16 or int8: then the model must
                           have been prepared (cspresnet_model_prepare_ex) for that
                           precision and the kernel set this context chooses (int8:
                           calibrated first); refused otherwise */
} cspresnet_context_options;

void cspresnet_context_options_init(cspresnet_context_options *opt);

/* cspresnet_context_create with options; opt NULL means the defaults. */
cspresnet_status cspresnet_context_create_ex(const cspresnet_model *model,
                                             const cspresnet_context_options *opt,
                                             cspresnet_context **out, char *err,
                                             size_t err_size);

/* One returned feature map. data belongs to the context and stays valid until the
 * next cspresnet_forward on the same context or cspresnet_context_free. */
typedef struct cspresnet_output {
    int stage;          /* 0..3, as in return_idx */
    int stride;         /* 4, 8, 16 or 32 */
    int n, c, h, w;     /* NCHW shape */
    const float *data;  /* n*c*h*w floats, C order */
} cspresnet_output;

/* Eval-mode forward of n images of c x h x w floats (NCHW, C order; caller keeps
 * ownership of input). c is the caller's channel count, stated so that gray (1) or
 * RGBA (4) data is refused with CSPRESNET_ERR_SHAPE ("input has 4 channels, the model
 * takes 3") instead of being read as 3-channel images; every CSPResNet takes c = 3.
 * Fills outs[0 .. *n_out-1] in return_idx order. The first call with a new shape plans
 * and allocates the arena; later calls with the same shape allocate nothing. */
cspresnet_status cspresnet_forward(cspresnet_context *ctx, const float *input, int n, int c,
                                   int h, int w, cspresnet_output outs[CSPRESNET_MAX_OUTPUTS],
                                   int *n_out);

/* On a detector model cspresnet_forward returns two outputs (stage -1, stride 0):
 * outs[0] "boxes" with n, c = L (anchors of all levels), h = 4, w = 1, i.e. [n, L, 4]
 * rows x1, y1, x2, y2 in input pixels (before any scale factor, not clipped), and
 * outs[1] "scores" with n, c = classes, h = L, w = 1, i.e. [n, classes, L] after the
 * sigmoid. Anchors run over the levels at strides 32, 16, 8, each row-major (L = 8400
 * at 640 x 640). cspresnet_detector_forward is the same forward with these outputs by
 * name; boxes and scores belong to the context as cspresnet_forward's outputs do. The
 * input's h and w must let the FPN's upsampled maps meet the next level (any multiple
 * of 32 does); others are refused with the sizes. A backbone model is refused. */
cspresnet_status cspresnet_detector_forward(cspresnet_context *ctx, const float *input, int n, int h, int w,
                                            const float **boxes, const float **scores, int *anchors,
                                            int *classes);

/* The message of the last failed call on ctx ("" when none). Valid until the next
 * call on ctx. */
const char *cspresnet_context_last_error(const cspresnet_context *ctx);

/* Bytes of the activation arena planned for the last input shape. */
size_t cspresnet_context_arena_bytes(const cspresnet_context *ctx);

/* Per-layer timing for benchmarks (`cspresnet bench --profile`). After
 * cspresnet_context_set_profile(ctx, 1) every forward adds each graph node's wall
 * time to a per-node total (set_profile also clears the totals). The name is the
 * node's module path ("stages.1.blocks.0.conv2.conv"), flops 2 x MACs of the last
 * forward's shape (0 for non-conv nodes). Returns the node count; i out of range or
 * NULL pointers are ignored. The kernel ISA the context runs ("avx512", ...) is
 * cspresnet_context_isa. */
void cspresnet_context_set_profile(cspresnet_context *ctx, int on);
int cspresnet_context_profile(const cspresnet_context *ctx, int i, const char **name,
                              double *seconds, double *flops);
const char *cspresnet_context_isa(const cspresnet_context *ctx);

/* Stops the threads and frees the arena. NULL is ok. */
void cspresnet_context_free(cspresnet_context *ctx);

/* Prints the model summary in paddle.summary's form for an n x 3 x h x w input: one
 * row per layer (leaf layers before the blocks that contain them, as Paddle's
 * forward hooks fire) with input shape, output shape and the layer's own parameters;
 * then total, trainable and non-trainable parameter counts (BN _mean/_variance are
 * non-trainable parameters, as in Paddle), the sizes in MB, and the conv MACs and
 * FLOPs (= 2 x MACs) of the stem, each stage and the whole. deployed = 1 shows the
 * fused network of cspresnet_model_deploy (conv layers with bias, no BN, one conv per
 * RepVGG block). */
cspresnet_status cspresnet_summary_print(const cspresnet_config *cfg, int deployed, int n,
                                         int h, int w, FILE *out, char *err, size_t err_size);

/* A PP-YOLOE / PP-YOLOE+ detector's architecture (SPEC section 5): the backbone, the
 * CustomCSPPAN neck and the PPYOLOEHead. */
typedef enum cspresnet_head_attn {
    CSPRESNET_HEAD_ATTN_CONVBN = 0,  /* ESEAttn's conv: ConvBN 1x1 + act (every config but t) */
    CSPRESNET_HEAD_ATTN_REPVGG,      /* a RepVggBlock without alpha (PP-YOLOE+ t) */
    CSPRESNET_HEAD_ATTN_NONE         /* no conv (the t-relu configs) */
} cspresnet_head_attn;

typedef struct cspresnet_detector_config {
    cspresnet_config backbone;       /* return_idx is not used: the neck takes stages 1, 2, 3 */
    int neck_channels[3];            /* the neck's outputs at strides 32, 16, 8 (the head's inputs) */
    int neck_blocks;                 /* BasicBlocks per CSPStage */
    int spp;                         /* 1: SPP in the first FPN stage (every release) */
    int num_classes;                 /* pred_cls outputs: 80 for COCO, 365 for Objects365 */
    int reg_max;                     /* DFL bins - 1: 16 */
    cspresnet_head_attn head_attn;
} cspresnet_detector_config;

/* Upstream's detector for width_mult and depth_mult: the backbone of
 * cspresnet_config_scaled, neck channels max(round(c * width_mult), 1) from
 * [768, 384, 192], neck_blocks max(round(3 * depth_mult), 1), SPP, 80 classes, reg_max
 * 16, ESEAttn with ConvBN. Multipliers must be > 0 and finite. */
cspresnet_status cspresnet_detector_config_scaled(cspresnet_detector_config *cfg, double width_mult,
                                                  double depth_mult);
/* The released detectors "t", "s", "m", "l", "x" (80 classes): backbones as
 * cspresnet_config_preset gives them (alpha off but for t: set backbone.use_alpha for
 * PP-YOLOE+); t is PP-YOLOE+ t: neck [384, 384, 384] scaled by 0.375, ESEAttn with a
 * RepVggBlock. CSPRESNET_ERR_ARGUMENT for an unknown name. */
cspresnet_status cspresnet_detector_config_preset(const char *name, cspresnet_detector_config *cfg);
/* The architecture of a detector model (cspresnet_model_load_detector);
 * CSPRESNET_ERR_ARGUMENT for a backbone model. */
cspresnet_status cspresnet_model_detector_config(const cspresnet_model *model, cspresnet_detector_config *cfg);

/* Builds a detector of cfg with deterministic pseudo-random weights (seeded), for
 * benchmarks, examples and tests of the pipeline; its detections mean nothing. Convs,
 * BN, alpha and ESE as cspresnet_model_create's (He-uniform, identity BN: the maps keep
 * their scale), proj_conv upstream's linspace(0, reg_max), and the head's predictions
 * set so that scores spread from about 0.005 to 0.4 and boxes are a few cells wide and
 * overlap (work for NMS like a trained model's). The BN statistics come from a seeded
 * 1 x 3 x 320 x 320 batch in [0, 1) (one forward); inputs unlike it may drive the deep
 * random network's maps far from unit scale: cspresnet_model_calibrate_bn on them. The
 * model is a detector as cspresnet_model_load_detector's are; CSPRESNET_ERR_CONFIG
 * with the field for a cfg upstream cannot build. *out is owned by the caller. */
cspresnet_status cspresnet_detector_create(const cspresnet_detector_config *cfg, uint64_t seed,
                                           cspresnet_model **out, char *err, size_t err_size);

/* Sets every BN's running statistics (_mean, _variance) from one eval forward of the
 * n x 3 x h x w batch: each BN's per-channel mean and variance of its input, the
 * variance plus 0.2 x the layer's mean variance. Every BN then gives about unit-scale
 * maps on that batch: what random weights need to keep their signal on it. Backbones
 * and detectors; call it before preparing the model or creating contexts (it writes
 * the weights). A deployed model is refused (CSPRESNET_ERR_ARGUMENT), and so are
 * prepared or mapped read-only weights (CSPRESNET_ERR_UNSUPPORTED). */
cspresnet_status cspresnet_model_calibrate_bn(cspresnet_model *model, const float *input, int n, int h, int w,
                                              char *err, size_t err_size);

/* cspresnet_summary_print for a whole detector at an n x 3 x h x w input: the rows of
 * the backbone, neck and head (and of CSPResNet, CustomCSPPAN and PPYOLOEHead, whose
 * shapes are lists, as paddle.summary prints them), the totals (every state-dict
 * element: 8,105,517 for s at 80 classes), sizes, MACs and FLOPs of backbone, neck and
 * head. Then the PP-YOLOE paper's convention: the form upstream's convert_to_deploy
 * leaves (each RepVggBlock one 3x3 conv with bias, every other BN kept), its trainable
 * parameters (BN statistics not counted: 7.93 M for s) and per part 2 x its conv MACs
 * (the DFL's proj_conv included), plus the total with every bias add and BN element
 * counted as one multiply-add more. deployed = 1: the table is of the fully fused
 * network (cspresnet_model_deploy's form). No weights are allocated. h and w must let
 * the FPN's upsampled maps meet the next level (any multiple of 32 does). */
cspresnet_status cspresnet_detector_summary_print(const cspresnet_detector_config *cfg, int deployed, int n, int h,
                                                  int w, FILE *out, char *err, size_t err_size);

/* Output size of a 3x3 stride-2 pad-1 conv: (size + 1) / 2. Stage i output of an
 * h x w input is h reduced i + 2 times. */
int cspresnet_stage_size(int input_size, int stage);

/* ---- Images: resize and pre-processing (src/preprocess/) ----
 * Pure C on 8-bit pixels the caller has decoded (the library decodes no files; the CLI
 * uses libjpeg-turbo and libpng). Together they reproduce upstream's eval transform:
 * cv2.resize INTER_CUBIC without keeping the ratio, then NormalizeImage, then Permute. */

typedef enum cspresnet_preprocess {
    CSPRESNET_PRE_PPYOLOE_PLUS = 0, /* "ppyoloe+": RGB / 255 (PP-YOLOE+) */
    CSPRESNET_PRE_PPYOLOE,          /* "ppyoloe": RGB / 255, then (x - mean) / std, ImageNet
                                       mean 0.485,0.456,0.406 std 0.229,0.224,0.225 */
    CSPRESNET_PRE_IMAGENET,         /* "imagenet": the same arithmetic (CSPResNetb_* backbones) */
    CSPRESNET_PRE_NONE              /* "none": RGB values 0..255 as floats */
} cspresnet_preprocess;

/* "ppyoloe+", ...; NULL for an out-of-range value. */
const char *cspresnet_preprocess_name(cspresnet_preprocess pre);
/* Parses a preset name; CSPRESNET_ERR_ARGUMENT for an unknown one. */
cspresnet_status cspresnet_preprocess_parse(const char *name, cspresnet_preprocess *out);

/* Bicubic resize of an interleaved 8-bit image (sh x sw x channels, 1..4 channels) to
 * dh x dw x channels, bit-exact with OpenCV's cv2.resize INTER_CUBIC (Keys, A = -0.75,
 * half-pixel centres, clamped borders, OpenCV's fixed-point weights and rounding).
 * dst must hold dh*dw*channels bytes. Allocates temporary rows; thread-safe. */
cspresnet_status cspresnet_resize_cubic_u8(const uint8_t *src, int sh, int sw, int channels,
                                           uint8_t *dst, int dh, int dw, char *err,
                                           size_t err_size);

/* Letterbox of an RGB image into dh x dw x 3: resized with the ratio kept (bicubic as
 * above), centred as PaddleDetection's LetterBoxResize does, border value 128. box, if
 * not NULL, receives the placed image's top, left, height, width. */
cspresnet_status cspresnet_letterbox_u8(const uint8_t *src, int sh, int sw, uint8_t *dst, int dh,
                                        int dw, int box[4], char *err, size_t err_size);

/* RGB (h x w x 3, 8-bit, interleaved) to a 3 x h x w float planar tensor with a preset,
 * computed in upstream's float32/float64 order. out must hold 3*h*w floats. */
cspresnet_status cspresnet_image_to_tensor(const uint8_t *rgb, int h, int w,
                                           cspresnet_preprocess pre, float *out);

/* ---------------------------------------------------------------- training
 *
 * A trainer fine-tunes a copy of a model's weights (the model itself is not touched):
 *
 *     cspresnet_train_options topt;
 *     cspresnet_train_options_init(&topt);          // SGD momentum 0.9, train-mode BN
 *     topt.num_classes = 10;                         // built-in head on the last stage
 *     cspresnet_trainer *tr;
 *     cspresnet_trainer_create(model, &topt, &tr, err, sizeof err);
 *     for (...) {
 *         float loss; int correct;
 *         cspresnet_trainer_classify(tr, images, n, h, w, labels, &loss, &correct);
 *         cspresnet_trainer_step(tr);                // optimizer + schedule
 *     }
 *     cspresnet_model_save_pdparams(cspresnet_trainer_model(tr), "tuned.pdparams", ...);
 *
 * With a head of one's own: cspresnet_trainer_forward gives the feature maps of
 * return_idx (train mode), the head computes d loss / d feature map, and
 * cspresnet_trainer_backward takes those gradients and fills the parameter gradients
 * (one buffer laid out like the weights: cspresnet_trainer_param_grad).
 *
 * Semantics are upstream's: BN in train mode uses the batch mean and biased variance
 * and updates the running statistics as r = 0.9 r + 0.1 batch; the optimizer's weight
 * decay is an L2 term added to the gradient (Paddle's Momentum with L2Decay) on every
 * trainable tensor except BN weight and bias (upstream gives those L2Decay(0)); the
 * ESE fc weight and bias, alpha and the head carry the decay, as upstream's global
 * regularizer gives them. Thread-safety: a trainer is used by one thread at a time;
 * it owns its weights, gradients, optimizer state, activations and threads. */
typedef enum cspresnet_optimizer {
    CSPRESNET_OPT_SGD = 0,     /* Paddle's Momentum: v = mu v + (g + wd p); p -= lr v */
    CSPRESNET_OPT_ADAMW        /* p *= 1 - lr wd; Adam step with bias correction */
} cspresnet_optimizer;

typedef enum cspresnet_schedule {
    CSPRESNET_SCHED_CONSTANT = 0,
    CSPRESNET_SCHED_WARMUP_COSINE,  /* PP-YOLOE: linear warm-up, then cosine decay to min_lr */
    CSPRESNET_SCHED_ONE_CYCLE       /* PyTorch's OneCycleLR (cos, two phases, momentum fixed) */
} cspresnet_schedule;

typedef struct cspresnet_train_options {
    int threads;                 /* worker threads, 0 = all online CPUs */
    int train_bn;                /* 1 (default): batch statistics, running stats updated;
                                    0: frozen BN everywhere (running stats used and kept) */
    int freeze;                  /* -1 (default): nothing frozen; k >= 0: the stem and stages
                                    0..k-1 get no gradients, no updates, and frozen BN */
    int recompute;               /* 1: per-stage recomputation (upstream's use_checkpoint):
                                    only stage boundaries are kept, each stage is re-run
                                    before its backward pass */
    int num_classes;             /* 0: no head; > 0: global average pool of stage 3,
                                    linear, softmax cross-entropy (mean over the batch) */
    uint64_t head_seed;          /* head init: weight U(-1/sqrt(C), 1/sqrt(C)), bias 0 */
    cspresnet_optimizer optimizer;
    float lr;                    /* base (peak, for one-cycle) learning rate; default 0.01 */
    float momentum;              /* SGD; default 0.9 */
    float weight_decay;          /* default 5e-4 */
    float beta1, beta2, eps;     /* AdamW; defaults 0.9, 0.999, 1e-8 */
    cspresnet_schedule schedule;
    long total_steps;            /* optimizer steps the schedule spans */
    long warmup_steps;           /* warm-up + cosine */
    float warmup_start_factor;   /* lr at step 0 = lr * factor (PP-YOLOE: 0) */
    float min_lr;                /* cosine floor */
    float pct_start;             /* one-cycle: share of rising steps (0.3) */
    float div_factor;            /* one-cycle: start lr = lr / div_factor (25) */
    float final_div_factor;      /* one-cycle: end lr = start / final_div_factor (1e4) */
    const char *isa;             /* kernel set, as cspresnet_context_options.isa: NULL
                                    (default) = the best this CPU runs; read during
                                    cspresnet_trainer_create only */
} cspresnet_train_options;

void cspresnet_train_options_init(cspresnet_train_options *opt);

typedef struct cspresnet_trainer cspresnet_trainer;

/* Copies model's weights (a deployed model is refused). The model may be freed after. */
cspresnet_status cspresnet_trainer_create(const cspresnet_model *model,
                                          const cspresnet_train_options *opt,
                                          cspresnet_trainer **out, char *err, size_t err_size);
void cspresnet_trainer_free(cspresnet_trainer *tr);
const char *cspresnet_trainer_last_error(const cspresnet_trainer *tr);

/* Train-mode forward; outs as cspresnet_forward (data owned by the trainer, valid until
 * the next call). With train_bn the running statistics are updated. */
cspresnet_status cspresnet_trainer_forward(cspresnet_trainer *tr, const float *input, int n,
                                           int h, int w,
                                           cspresnet_output outs[CSPRESNET_MAX_OUTPUTS],
                                           int *n_out);
/* Backward of the last forward: dout[i] is d loss / d outs[i] (same shape; NULL means
 * zero). Overwrites every parameter gradient; d_input (n*3*h*w floats, or NULL)
 * receives d loss / d input (not available when freeze >= 0). */
cspresnet_status cspresnet_trainer_backward(cspresnet_trainer *tr,
                                            const float *const dout[CSPRESNET_MAX_OUTPUTS],
                                            float *d_input);
/* Built-in head (num_classes > 0): forward, loss, backward. labels in 0..classes-1.
 * *loss = mean cross-entropy, *correct = argmax hits; either may be NULL.
 * A loss that is NaN or infinite gives CSPRESNET_ERR_NOT_FINITE (no backward). */
cspresnet_status cspresnet_trainer_classify(cspresnet_trainer *tr, const float *input, int n,
                                            int h, int w, const int *labels, float *loss,
                                            int *correct);
/* Eval-mode logits (running statistics, nothing updated): n x num_classes floats. */
cspresnet_status cspresnet_trainer_predict(cspresnet_trainer *tr, const float *input, int n,
                                           int h, int w, float *logits);
/* One optimizer step with the scheduled learning rate, then step count + 1.
 * CSPRESNET_ERR_NOT_FINITE if a weight, running statistic, head or optimizer tensor
 * then holds a NaN or an infinity: the run diverged, and the state is past saving. */
cspresnet_status cspresnet_trainer_step(cspresnet_trainer *tr);
long cspresnet_trainer_step_count(const cspresnet_trainer *tr);
float cspresnet_trainer_lr(const cspresnet_trainer *tr);   /* lr of the next step */

/* The trainer's weights (updated in place by every step; running stats by forward).
 * Valid until cspresnet_trainer_free; usable with contexts and the savers. */
const cspresnet_model *cspresnet_trainer_model(const cspresnet_trainer *tr);
/* Gradient of parameter i (model order); NULL for _mean/_variance. The gradients are
 * one buffer with the weights' layout. */
const float *cspresnet_trainer_param_grad(const cspresnet_trainer *tr, size_t i);
/* Head tensors (NULL without a head): weight classes x C, bias classes. */
float *cspresnet_trainer_head(cspresnet_trainer *tr, int *classes, int *channels, float **bias);

/* Checkpoint: weights, running statistics, head, optimizer state and step count in one
 * file, written atomically (temp + fsync + rename). Loading checks every key and shape.
 * A state holding a NaN or an infinity is not written (CSPRESNET_ERR_NOT_FINITE). */
cspresnet_status cspresnet_trainer_save(cspresnet_trainer *tr, const char *path);
cspresnet_status cspresnet_trainer_load(cspresnet_trainer *tr, const char *path);

/* Bytes the trainer allocated for the last planned shape: activations, gradients,
 * saved statistics and scratch (weights, gradients of weights and optimizer state
 * are reported by cspresnet_trainer_state_bytes). */
size_t cspresnet_trainer_activation_bytes(const cspresnet_trainer *tr);
size_t cspresnet_trainer_state_bytes(const cspresnet_trainer *tr);

/* ---- Detection post-processing: multiclass NMS (src/postprocess/) ----
 * Paddle's multiclass_nms3 as PP-YOLOE exports it: per image and class, the anchors
 * whose score is > score_threshold (NaN never is), by score descending (ties in anchor
 * order), at most nms_top_k, then greedy NMS keeping a box while its IoU with every box
 * kept for that class is <= nms_threshold (normalized IoU, float32; NaN suppresses);
 * if an image keeps more than keep_top_k, the best keep_top_k by score (ties by label,
 * then selection order), regrouped by ascending label. -1 means no limit. */
typedef struct cspresnet_nms_options {
    float score_threshold;   /* 0.01 */
    int nms_top_k;           /* 1000 */
    int keep_top_k;          /* 300 */
    float nms_threshold;     /* 0.7 */
    int background_label;    /* -1: none */
} cspresnet_nms_options;

/* PP-YOLOE and PP-YOLOE+'s defaults (the values above). */
void cspresnet_nms_options_init(cspresnet_nms_options *opt);

/* Rows that cspresnet_multiclass_nms may write for n images of classes x anchors
 * (0 for a non-positive size or NULL opt). */
size_t cspresnet_nms_max_rows(const cspresnet_nms_options *opt, int n, int classes, int anchors);

/* boxes: n x anchors x 4 floats (x1, y1, x2, y2); scores: n x classes x anchors. Writes
 * rows (room for capacity >= cspresnet_nms_max_rows rows of 6 floats: label, score, x1,
 * y1, x2, y2) for all images in order, bbox_num[0..n-1] rows per image (no -1 row for an
 * empty image) and *n_rows in all. Time and memory are bounded by n, classes, anchors and
 * nms_top_k for any values, NaN included. Thread-safe; allocates its own workspace. */
cspresnet_status cspresnet_multiclass_nms(const float *boxes, const float *scores, int n, int classes,
                                          int anchors, const cspresnet_nms_options *opt, float *rows,
                                          size_t capacity, int *bbox_num, size_t *n_rows, char *err,
                                          size_t err_size);

#ifdef __cplusplus
}
#endif
#endif /* CSPRESNET_H */
