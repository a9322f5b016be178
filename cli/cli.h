/*
 * cli.h - shared pieces of the cspresnet command-line tool.
 * Exit codes: 0 success, 1 failure (bad file, bad weights, I/O), 2 usage error.
 */
#ifndef CSPRESNET_CLI_H
#define CSPRESNET_CLI_H

#include "cspresnet.h"

#define EXIT_USAGE 2

/* Architecture flags shared by summary and infer. */
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
/* If argv[*i] is an architecture flag, consumes it (and its value) and returns 1;
 * returns -1 after printing a usage error, 0 if not an architecture flag. */
int arch_flags_parse(arch_flags *f, int argc, char **argv, int *i, const char *cmd);
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
/* Value of a flag that takes one: argv[++*i], or NULL after printing a usage error. */
const char *flag_value(int argc, char **argv, int *i, const char *cmd);
/* 0 if count is 1..4 and every stage index is in 0..3 (a --return-idx value), else -1. */
int return_idx_check(const int *idx, int count);
/* The thread count to use for --threads requested: at most the online CPUs (more only
 * wait on each other and each takes its own scratch), with a note on stderr when cut. */
int cli_threads(int requested, const char *cmd);

/* Opens a weight file in any supported format (weights.c). */
cspresnet_status cli_load_weights(const char *path, const cspresnet_load_options *opt,
                                  cspresnet_model **out, char *err, size_t err_size);

/* Flags of the subcommands (args.c): --threads N (default 0: one per online CPU) where a
 * network runs, -q/--quiet (nothing on stdout on success) and -v/--verbose everywhere.
 * --version works after any subcommand (main.c). common_flags_parse returns 1 if it consumed argv[*i], 0 if
 * argv[*i] is not one of these, -1 after printing a usage error. */
typedef struct common_flags {
    int threads;
    int quiet;
    int verbose;
} common_flags;
void common_flags_init(common_flags *c);
int common_flags_parse(common_flags *c, int argc, char **argv, int *i, const char *cmd);
/* Only -q/--quiet and -v/--verbose (the later one wins), for the commands that run no
 * network and so take no --threads (summary, convert). Returns 1 if it consumed arg. */
int quiet_flags_parse(common_flags *c, const char *arg);

/* Peak resident memory of this process in MiB (VmHWM; peak_rss.c). */
double cli_peak_rss_mib(void);

int cmd_summary(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_grad(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_convert(int argc, char **argv);

#endif
