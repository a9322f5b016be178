/*
 * cli.h - shared pieces of the cspresnet command-line tool.
 * Exit codes: 0 success, 1 failure (bad file, bad weights, I/O), 2 usage error.
 */
#ifndef CSPRESNET_CLI_H
#define CSPRESNET_CLI_H

#include "cspresnet.h"
#include "cspresnet_io.h"
#include "flags.h"

#define EXIT_USAGE 2

/* What the architecture flags (the ARCH_FLAGS rows) say. */
typedef struct arch_flags {
    const char *arch;          /* --arch */
    double width, depth;       /* --width-mult / --depth-mult; 0 = not given */
    int layers[4], have_layers;
    int channels[5], have_channels;
    int large_stem;            /* -1 not given, 0 --small-stem, 1 --large-stem */
    int alpha;                 /* -1 not given, 0 --no-alpha, 1 --alpha */
    int act_given;
    cspresnet_act act;
    int return_idx[4], num_return;  /* num_return 0 = not given */
} arch_flags;

void arch_flags_init(arch_flags *f);
/* The parsers of ARCH_FLAGS' --act and --return-idx (dest: the arch_flags), for a command
 * that takes only those two (grad). --act prints the row's bad message. */
int arch_act_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);
int arch_return_idx_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);
/* Builds the config the flags describe (preset, multipliers or explicit lists). */
int arch_flags_config(const arch_flags *f, cspresnet_config *cfg, const char *cmd);
/* The load options the flags describe: act and return_idx, and any architecture flags
 * as checks the weight file must pass (opt->expect then points at *expect, which the
 * caller keeps alive). Returns -1 after printing a usage error. */
int arch_flags_load_options(const arch_flags *f, cspresnet_load_options *opt,
                            cspresnet_config *expect, const char *cmd);
/* Replaces *model by its deployed form unless it already is one. */
cspresnet_status cli_deploy(cspresnet_model **model, char *err, size_t err_size);
/* True if any flag that fixes the architecture (not act / return_idx) was given. */
int arch_flags_fix_architecture(const arch_flags *f);

/* Parses "a,b,c" into at most max ints; returns the count or -1. */
int parse_int_list(const char *s, int *out, int max);
/* Parses a --size value: "H,W", or "N" for N,N (as train and demo take it), each side in
 * 1..max. Returns 0, or -1 if the text is neither. */
int parse_size(const char *s, int hw[2], int max);
/* 0 if count is 1..4 and every stage index is in 0..3 (a --return-idx value), else -1. */
int return_idx_check(const int *idx, int count);
/* The thread count to use for --threads requested: at most the online CPUs (more only
 * wait on each other and each takes its own scratch), with a note on stderr when cut. */
int cli_threads(int requested, const char *cmd);

/* Opens a weight file in any supported format (weights.c). */
cspresnet_status cli_load_weights(const char *path, const cspresnet_load_options *opt,
                                  cspresnet_model **out, char *err, size_t err_size);
/* The same for a whole detector (cspresnet_model_load_detector or its safetensors twin). */
cspresnet_status cli_load_detector(const char *path, const cspresnet_load_options *opt,
                                   cspresnet_model **out, char *err, size_t err_size);
/* A detector when the file holds a whole one; a backbone when it has no PP-YOLOE neck
 * (a backbone file, or a checkpoint's backbone keys alone). A detector whose neck or
 * head is refused (missing, mis-shaped keys) is an error, not a backbone. */
cspresnet_status cli_load_model(const char *path, const cspresnet_load_options *opt, cspresnet_model **out,
                                char *err, size_t err_size);

/* What every subcommand that runs a network takes: --threads N (default 0: one per
 * online CPU), -q/--quiet (nothing on stdout on success) and -v/--verbose; summary and
 * convert take only -q and -v. Rows: cli_threads_flag, cli_quiet (flags.h). */
typedef struct common_flags {
    int threads;
    int quiet;
    int verbose;
    int precision;   /* cspresnet_precision: --precision on infer, bench, detect */
    int precision_given;      /* 0: the weight file's (cli_precision) */
    const char *isa; /* kernel set for cli_prepare and cli_context_create_cf (NULL: cli_isa()) */
    const char *calibration;  /* int8: "random" or an .npy batch for cli_prepare to calibrate on */
    int calib_method;         /* cspresnet_calibration */
} common_flags;
void common_flags_init(common_flags *c);

/* mkdir(path) unless it exists: 0, or -1 with errno set (the caller names path). */
int cli_make_dir(const char *path);
/* A seeded batch of shape[0..3] in [0, 1), like an image scaled by 1/255 (the same
 * values in infer --random-input, bench and demo). 0, or -1 out of memory. */
int cli_random_input(cspresnet_array *x, const int shape[4]);

/* The kernel set named by the environment variable CSPRESNET_ISA (ref, generic, avx2,
 * avx512), or NULL when it is unset: the best this CPU runs. The library reads no
 * environment; the CLI passes this to every context and trainer it creates. */
const char *cli_isa(void);
/* cspresnet_context_create_ex with `threads` and cli_isa(). */
cspresnet_status cli_context_create(const cspresnet_model *model, int threads, cspresnet_context **out,
                                    char *err, size_t err_size);
/* The same for cf's threads, precision and kernel set; the model must have been
 * through cli_prepare with cf. */
cspresnet_status cli_context_create_cf(const cspresnet_model *model, const common_flags *cf,
                                       cspresnet_context **out, char *err, size_t err_size);
/* Packs the model's weights for cf's precision and kernel set (cspresnet_model_prepare_ex;
 * fp32: nothing to do). int8 on a model without scales calibrates it first on
 * cf->calibration: an .npy batch (N x 3 x H x W) or "random" (CLI_CALIB_RANDOM_N seeded
 * uniform [0, 1) images of 3 x CLI_CALIB_RANDOM_HW^2, drawn apart from
 * cli_random_input's). */
/* The precision to run: --precision when given, else the one the weight file was
 * written for (fp32, or a bf16 / int8 file's). An int8 file asked for fp32 or bf16
 * runs its dequantized weights (q * scale); --calibration with an int8 file is refused. */
int cli_precision(const cspresnet_model *model, const common_flags *cf);
/* A calibration batch: "random" (below) or an .npy batch N x 3 x H x W. */
cspresnet_status cli_calibration_batch(const char *src, cspresnet_array *x, char *err, size_t err_size);
#define CLI_CALIB_RANDOM_N 4
#define CLI_CALIB_RANDOM_HW 256
cspresnet_status cli_prepare(cspresnet_model *model, const common_flags *cf, char *err, size_t err_size);

/* Peak resident memory of this process in MiB (VmHWM; peak_rss.c). */
double cli_peak_rss_mib(void);

int cmd_summary(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_detect(int argc, char **argv);
int cmd_quantize(int argc, char **argv);

#endif
