/*
 * flags.h - one declarative table of flags per subcommand. The same rows drive the
 * parser and print `--help`, so a flag cannot be accepted without being listed, or
 * listed without being accepted.
 *
 * A row names the flag, its short alias, the placeholder of its value (none: the flag
 * takes no value), its help text, the parser of its value with the offset of the
 * field it fills in the command's options struct, and the range and message the
 * parser checks. A row with the name "" is a heading (help only); a group row splices
 * a shared table (the architecture flags, --threads/-q/-v, --help/--version) whose
 * offsets count from the group row's own field. Flags are parsed in the order given,
 * so `--threads 0 --help` is refused and `--threads 2 --help` prints the help.
 */
#ifndef CSPRESNET_CLI_FLAGS_H
#define CSPRESNET_CLI_FLAGS_H

#include <stddef.h>
#include <stdio.h>

typedef struct cli_flag cli_flag;
typedef struct cli_command cli_command;

/* Parses value (NULL for a flag without a placeholder) into dest, the row's field.
 * Returns 0, CLI_STOP after printing what was asked (--help, --version), or -1 after
 * printing why the value is refused. */
typedef int (*cli_parse_fn)(const cli_flag *f, const char *value, void *dest, const cli_command *cmd);

#define CLI_STOP 1

/* One accepted word of a choice flag (--optimizer sgd) and the int stored for it. */
typedef struct cli_choice {
    const char *word;
    int value;
} cli_choice;

struct cli_flag {
    const char *name;        /* "--weights"; "" a heading; NULL ends the table */
    const char *alias;       /* "-o", or NULL */
    const char *meta;        /* "FILE"; NULL: no value */
    const char *help;        /* lines separated by '\n' */
    cli_parse_fn parse;
    size_t off;              /* offset of the field (a group's base) in the options */
    double lo, hi;           /* range of a number, count or size; the value cli_set stores */
    const char *bad;         /* message for a refused value: a printf format taking the value
                                (one %s or none); NULL: the parser's own */
    const cli_choice *choices; /* cli_pick: the words, ended by {NULL} */
    const cli_flag *group;   /* a shared table spliced in here */
};

struct cli_command {
    const char *name;        /* "summary" */
    const char *synopsis;    /* the usage lines and description, before the flags */
    const char *notes;       /* after the flags (exit status, ...) */
    const cli_flag *flags;   /* the command's table (STANDARD_FLAGS follow it) */
    /* A word that is no flag of the table: NULL refuses it as an unknown option. */
    int (*positional)(void *opts, const char *arg, const cli_command *cmd);
    const char *hint;        /* what an unknown option points to; NULL: "see cspresnet NAME --help" */
};

/* Parses argv[1 .. argc-1] into opts. Returns CLI_PARSED to go on, 0 after --help or
 * --version was printed, EXIT_USAGE (2) after a usage error was printed. */
#define CLI_PARSED (-1)
int cli_parse(const cli_command *cmd, void *opts, int argc, char **argv);
void cli_help(const cli_command *cmd, FILE *out);
/* Prints "cspresnet NAME: unknown option 'arg' (HINT)" and returns -1. */
int cli_unknown(const cli_command *cmd, const char *arg);
/* Prints "cspresnet NAME: " and the row's bad message with value; returns -1. */
int cli_refuse(const cli_flag *f, const char *value, const cli_command *cmd);

/* Value parsers for the rows. */
int cli_str(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);    /* const char * */
int cli_set(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);    /* int = lo */
int cli_count(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);  /* int in lo..hi */
int cli_size(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);   /* int[2]: H,W or N */
int cli_pick(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);   /* int from choices */
/* A number in [lo, hi] (strtod: 1e3 and 2.5 are numbers), stored truncated as int,
 * long or uint64_t, or as a double. */
int cli_num_int(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);
int cli_num_long(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);
int cli_num_u64(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);
int cli_num(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);

/* On a common_flags (args.c): -q (lo 1) or -v (lo 0), the later one winning; --threads
 * in lo..hi, cut to the online CPUs with a note. */
int cli_quiet(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);
int cli_threads_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);
/* --precision fp32|bf16|int8 into a common_flags; CLI_PRECISION_ROW(opts type) is its row. */
int cli_precision_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);
#define CLI_PRECISION_ROW(type)                                                                          \
    {CLI_FLAG("--precision", NULL, "P", "fp32; bf16: convs multiply bfloat16 weights and\n"     \
                                        "activations, accumulating in fp32 (AMX where the CPU has it;\n"  \
                                        "outputs about 1-3% of their largest value from fp32's); int8:\n" \
                                        "convs multiply int8 weights (per channel) and activations (per\n" \
                                        "tensor, calibrated: --calibration) summed in int32 (AMX where\n" \
                                        "the CPU has it); the stem's first conv stays fp32 in both.\n"    \
                                        "Default: the weight file's (a bf16 or int8 file from convert /\n" \
                                        "quantize runs so; fp32 or bf16 of an int8 file runs its\n"       \
                                        "dequantized weights)"),                                          \
     .parse = cli_precision_flag, .off = offsetof(type, cf), .bad = "--precision must be fp32, bf16 or int8"}
/* --preprocess P into a cspresnet_preprocess (infer, detect, quantize). */
int cli_preprocess_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);
/* --calibration SRC and --calib-method M into a common_flags (int8). */
int cli_calib_method_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd);
#define CLI_CALIBRATION_ROWS(type)                                                                        \
    {CLI_FLAG("--calibration", NULL, "SRC", "int8: the inputs that choose the activation scales: an .npy\n" \
                                            "batch (N x 3 x H x W) or random (4 seeded 256x256 images);\n" \
                                            "an int8 file (cspresnet quantize) needs none"),               \
     .parse = cli_str, .off = offsetof(type, cf) + offsetof(common_flags, calibration)},                   \
    {CLI_FLAG("--calib-method", NULL, "M", "int8: minmax (default: each conv input's min and max) or\n"   \
                                           "percentile (its 0.01% and 99.99% quantiles)"),                \
     .parse = cli_calib_method_flag, .off = offsetof(type, cf),                                           \
     .bad = "--calib-method must be minmax or percentile"}

/* Shared tables (args.c): ARCH_FLAGS fill an arch_flags; STANDARD_FLAGS, --help (-h)
 * and --version, end every command's table without being named in it. */
extern const cli_flag ARCH_FLAGS[], STANDARD_FLAGS[];

/* The four words of a row: {CLI_FLAG("--out", "-o", "DIR", "help"), .parse = ..., .off = ...}. */
#define CLI_FLAG(name_, alias_, meta_, help_) .name = (name_), .alias = (alias_), .meta = (meta_), .help = (help_)

/* A row splicing group at the field off of the options. */
#define CLI_GROUP(table, offset) {.name = "", .group = (table), .off = (offset)}
#define CLI_HEADING(text) {.name = "", .help = (text)}
#define CLI_END {.name = NULL}

#endif
