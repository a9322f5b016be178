/* args.c - the flag rows and value checks the subcommands share (flags.h), and the
 * architecture they describe. */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

void arch_flags_init(arch_flags *f)
{
    memset(f, 0, sizeof *f);
    f->large_stem = -1;
    f->alpha = -1;
    f->act = CSPRESNET_ACT_SWISH;
}

int parse_int_list(const char *s, int *out, int max)
{
    int count = 0;
    const char *p = s;
    if (!*p)
        return -1;
    for (;;) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT_MIN || v > INT_MAX || count >= max)
            return -1;
        out[count++] = (int)v;
        if (*end == '\0')
            return count;
        if (*end != ',')
            return -1;
        p = end + 1;
    }
}

int parse_size(const char *s, int hw[2], int max)
{
    int n = parse_int_list(s, hw, 2);
    if (n == 1)
        hw[1] = hw[0];
    return (n == 1 || n == 2) && hw[0] >= 1 && hw[1] >= 1 && hw[0] <= max && hw[1] <= max ? 0 : -1;
}

int return_idx_check(const int *idx, int count)
{
    if (count < 1)
        return -1;
    for (int k = 0; k < count; k++)
        if (idx[k] < 0 || idx[k] >= CSPRESNET_NUM_STAGES)
            return -1;
    return 0;
}

int cli_threads(int requested, const char *cmd)
{
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 1 || requested <= online)
        return requested;
    fprintf(stderr, "cspresnet %s: note: --threads %d is more than the %ld online CPUs; using %ld\n", cmd,
            requested, online, online);
    return (int)online;
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return end != s && *end == '\0' && errno == 0;
}

/* --width-mult / --depth-mult: a double in (0, hi]. */
static int arch_mult(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    double d;
    if (!parse_double(v, &d) || !(d > 0.0) || d > f->hi) {
        fprintf(stderr, "cspresnet %s: %s '%s' must be a number in (0, %g]\n", cmd->name, f->name, v, f->hi);
        return -1;
    }
    *(double *)dest = d;
    return 0;
}

/* The rows below take the whole arch_flags (off 0), for the fields that go together. */
static int arch_layers(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    arch_flags *a = dest;
    int is_layers = strcmp(f->name, "--layers") == 0, want = is_layers ? 4 : 5;
    if (parse_int_list(v, is_layers ? a->layers : a->channels, want) != want) {
        fprintf(stderr, "cspresnet %s: %s '%s' must be %d comma-separated integers\n", cmd->name, f->name, v, want);
        return -1;
    }
    if (is_layers)
        a->have_layers = 1;
    else
        a->have_channels = 1;
    return 0;
}

int arch_act_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    arch_flags *a = dest;
    if (cspresnet_act_parse(v, &a->act) != CSPRESNET_OK)
        return cli_refuse(f, v, cmd);
    a->act_given = 1;
    return 0;
}

int arch_return_idx_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    arch_flags *a = dest;
    a->num_return = parse_int_list(v, a->return_idx, CSPRESNET_MAX_OUTPUTS);
    if (return_idx_check(a->return_idx, a->num_return) != 0) {
        fprintf(stderr, "cspresnet %s: %s '%s' must be 1 to 4 comma-separated stage indices (0..3)\n", cmd->name,
                f->name, v);
        return -1;
    }
    return 0;
}

static const char ACT_REFUSED[] =
    "unknown activation '%s' (swish/silu, relu, leaky_relu, mish, hardswish, gelu, relu6, sigmoid, none)";

const cli_flag ARCH_FLAGS[] = {
    {CLI_FLAG("--arch", NULL, "P", "preset: t (0.375/0.33, alpha), s, m, l, x (large stem, swish)"),
     .parse = cli_str, .off = offsetof(arch_flags, arch)},
    {CLI_FLAG("--width-mult", NULL, "W", "channel multiplier on [64,128,256,512,1024] (default 1.0)"),
     .parse = arch_mult, .off = offsetof(arch_flags, width), .hi = 64},
    {CLI_FLAG("--depth-mult", NULL, "D", "block multiplier on [3,6,6,3] (default 1.0)"),
     .parse = arch_mult, .off = offsetof(arch_flags, depth), .hi = 64},
    {CLI_FLAG("--layers", NULL, "L0,L1,L2,L3", "upstream's base block counts, before the multipliers"),
     .parse = arch_layers},
    {CLI_FLAG("--channels", NULL, "C0,C1,C2,C3,C4", "upstream's base widths, before the multipliers"),
     .parse = arch_layers},
    {CLI_FLAG("--act", NULL, "A", "swish (default), relu, leaky_relu, mish, hardswish, gelu, relu6, sigmoid, none"),
     .parse = arch_act_flag, .bad = ACT_REFUSED},
    {CLI_FLAG("--large-stem", NULL, NULL, "three stem convs (default, as every shipped config)"),
     .parse = cli_set, .off = offsetof(arch_flags, large_stem), .lo = 1},
    {CLI_FLAG("--small-stem", NULL, NULL, "two stem convs"),
     .parse = cli_set, .off = offsetof(arch_flags, large_stem)},
    {CLI_FLAG("--alpha", NULL, NULL, "learnable RepVGG alpha (PP-YOLOE+)"),
     .parse = cli_set, .off = offsetof(arch_flags, alpha), .lo = 1},
    {CLI_FLAG("--no-alpha", NULL, NULL, "no alpha"), .parse = cli_set, .off = offsetof(arch_flags, alpha)},
    {CLI_FLAG("--return-idx", NULL, "1,2,3", "stages returned, ascending in 0..3 (default 1,2,3; 0,1,2,3 for P2)"),
     .parse = arch_return_idx_flag},
    CLI_END,
};

int arch_flags_fix_architecture(const arch_flags *f)
{
    return f->arch || f->width > 0 || f->depth > 0 || f->have_layers || f->have_channels;
}

int arch_flags_config(const arch_flags *f, cspresnet_config *cfg, const char *cmd)
{
    if (f->arch && (f->width > 0 || f->depth > 0)) {
        fprintf(stderr, "cspresnet %s: give --arch or --width-mult/--depth-mult, not both\n", cmd);
        return -1;
    }
    if (f->arch) {
        if (cspresnet_config_preset(f->arch, cfg) != CSPRESNET_OK) {
            fprintf(stderr, "cspresnet %s: unknown --arch '%s' (t, s, m, l, x)\n", cmd, f->arch);
            return -1;
        }
    } else {
        cspresnet_config_scaled(cfg, f->width > 0 ? f->width : 1.0, f->depth > 0 ? f->depth : 1.0);
    }
    if (f->have_layers || f->have_channels) {
        /* explicit lists are scaled like upstream's constructor arguments */
        double wm = f->width > 0 ? f->width : 1.0, dm = f->depth > 0 ? f->depth : 1.0;
        if (f->arch) {
            fprintf(stderr, "cspresnet %s: --layers/--channels go with --width-mult/--depth-mult, not --arch\n", cmd);
            return -1;
        }
        for (int i = 0; f->have_layers && i < 4; i++) {
            double l = f->layers[i] * dm;
            cfg->layers[i] = l < 1.0 ? 1 : (int)rint(l);
            if (cfg->layers[i] < 1)
                cfg->layers[i] = 1;
        }
        for (int i = 0; f->have_channels && i < 5; i++) {
            double c = f->channels[i] * wm;
            cfg->channels[i] = c < 1.0 ? 1 : (int)rint(c);
            if (cfg->channels[i] < 1)
                cfg->channels[i] = 1;
        }
    }
    if (f->large_stem >= 0)
        cfg->use_large_stem = f->large_stem;
    if (f->alpha >= 0)
        cfg->use_alpha = f->alpha;
    cfg->act = f->act;
    if (f->num_return > 0) {
        cfg->num_return = f->num_return;
        memcpy(cfg->return_idx, f->return_idx, sizeof cfg->return_idx);
    }
    return 0;
}

void common_flags_init(common_flags *c)
{
    memset(c, 0, sizeof *c);
    c->calib_method = CSPRESNET_CALIB_MINMAX;
}

/* -q (lo 1) and -v (lo 0) on a common_flags: the later one wins. */
int cli_quiet(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    common_flags *c = dest;
    (void)v, (void)cmd;
    c->quiet = f->lo != 0;
    c->verbose = f->lo == 0;
    return 0;
}

int cli_precision_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    common_flags *c = dest;
    cspresnet_precision p;
    if (cspresnet_precision_parse(v, &p) != CSPRESNET_OK)
        return cli_refuse(f, v, cmd);
    c->precision = (int)p;
    c->precision_given = 1;
    return 0;
}

int cli_calib_method_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    common_flags *c = dest;
    cspresnet_calibration m;
    if (cspresnet_calibration_parse(v, &m) != CSPRESNET_OK)
        return cli_refuse(f, v, cmd);
    c->calib_method = (int)m;
    return 0;
}

int cli_preprocess_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    return cspresnet_preprocess_parse(v, dest) == CSPRESNET_OK ? 0 : cli_refuse(f, v, cmd);
}

int cli_threads_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    common_flags *c = dest;
    (void)f;
    if (parse_int_list(v, &c->threads, 1) != 1 || c->threads < 1 || c->threads > 1024) {
        fprintf(stderr, "cspresnet %s: --threads needs a count in 1..1024 (default: all CPUs)\n", cmd->name);
        return -1;
    }
    c->threads = cli_threads(c->threads, cmd->name);
    return 0;
}

static int help_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    (void)f, (void)v, (void)dest;
    cli_help(cmd, stdout);
    return CLI_STOP;
}

/* main.c answers --version anywhere after the command first; this row lists it. */
static int version_flag(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    (void)f, (void)v, (void)dest, (void)cmd;
    printf("cspresnet %s\n", CSPRESNET_VERSION);
    return CLI_STOP;
}

const cli_flag STANDARD_FLAGS[] = {
    {CLI_FLAG("--help", "-h", NULL, "this help"), .parse = help_flag},
    {CLI_FLAG("--version", NULL, NULL, "the version"), .parse = version_flag},
    CLI_END,
};
int arch_flags_load_options(const arch_flags *f, cspresnet_load_options *opt,
                            cspresnet_config *expect, const char *cmd)
{
    cspresnet_load_options_init(opt);
    opt->act = f->act;
    if (f->num_return > 0) {
        opt->num_return = f->num_return;
        memcpy(opt->return_idx, f->return_idx, sizeof opt->return_idx);
    }
    opt->expect_large_stem = f->large_stem;
    opt->expect_alpha = f->alpha;
    if (arch_flags_fix_architecture(f)) {
        if (arch_flags_config(f, expect, cmd) != 0)
            return -1;
        opt->expect = expect;
    }
    return 0;
}
