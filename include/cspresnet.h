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
 *     if (cspresnet_forward(ctx, image, 1, 640, 640, outs, &n_out) != CSPRESNET_OK)
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
    CSPRESNET_ERR_MEMORY = 8         /* an allocation failed */
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
 * *out is owned by the caller. On failure nothing is allocated and err says why. */
cspresnet_status cspresnet_model_load(const char *path, const cspresnet_load_options *opt,
                                      cspresnet_model **out, char *err, size_t err_size);

/* Deploy mode, as upstream's convert_to_deploy and then some: every BN is folded into
 * its conv (t = weight / sqrt(_variance + eps); kernel * t; bias - _mean * weight /
 * sqrt(_variance + eps)), each RepVGG block becomes one 3x3 conv with kernel
 * K3 + alpha * pad(K1) and bias b3 + alpha * b1, computed in float32 in upstream's order,
 * and the activation (and the BasicBlock shortcut) run in the conv's epilogue. The
 * result is a new model (the caller owns it); `model` is unchanged. A deployed model's
 * parameters are "<layer>.conv.weight" and "<layer>.conv.bias" for every conv layer
 * (RepVGG blocks: "...blocks.j.conv2.conv.*", upstream's deploy names) and the ESE fc. */
cspresnet_status cspresnet_model_deploy(const cspresnet_model *model, cspresnet_model **out,
                                        char *err, size_t err_size);
int cspresnet_model_is_deployed(const cspresnet_model *model);

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
 * must outlive the context. *out is owned by the caller. */
cspresnet_status cspresnet_context_create(const cspresnet_model *model, int threads,
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

/* Eval-mode forward of n images of 3 x h x w floats (NCHW, C order; caller keeps
 * ownership of input). Fills outs[0 .. *n_out-1] in return_idx order. The first call
 * with a new shape plans and allocates the arena; later calls with the same shape
 * allocate nothing. */
cspresnet_status cspresnet_forward(cspresnet_context *ctx, const float *input, int n,
                                   int h, int w, cspresnet_output outs[CSPRESNET_MAX_OUTPUTS],
                                   int *n_out);

/* The message of the last failed call on ctx ("" when none). Valid until the next
 * call on ctx. */
const char *cspresnet_context_last_error(const cspresnet_context *ctx);

/* Bytes of the activation arena planned for the last input shape. */
size_t cspresnet_context_arena_bytes(const cspresnet_context *ctx);

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

/* Output size of a 3x3 stride-2 pad-1 conv: (size + 1) / 2. Stage i output of an
 * h x w input is h reduced i + 2 times. */
int cspresnet_stage_size(int input_size, int stage);

#ifdef __cplusplus
}
#endif
#endif /* CSPRESNET_H */
