/* args.c - flag parsing shared by the subcommands. */
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

const char *flag_value(int argc, char **argv, int *i, const char *cmd)
{
    if (*i + 1 >= argc) {
        fprintf(stderr, "cspresnet %s: %s needs a value (see cspresnet %s --help)\n", cmd, argv[*i], cmd);
        return NULL;
    }
    return argv[++*i];
}

static int parse_double(const char *s, double *out)
{
    char *end;
    errno = 0;
    *out = strtod(s, &end);
    return end != s && *end == '\0' && errno == 0;
}

int arch_flags_parse(arch_flags *f, int argc, char **argv, int *i, const char *cmd)
{
    const char *a = argv[*i], *v;
#define VALUE() do { if (!(v = flag_value(argc, argv, i, cmd))) return -1; } while (0)
    if (strcmp(a, "--arch") == 0) {
        VALUE();
        f->arch = v;
    } else if (strcmp(a, "--width-mult") == 0 || strcmp(a, "--depth-mult") == 0) {
        VALUE();
        double d;
        if (!parse_double(v, &d) || !(d > 0.0) || d > 64.0) {
            fprintf(stderr, "cspresnet %s: %s '%s' must be a number in (0, 64]\n", cmd, a, v);
            return -1;
        }
        if (a[2] == 'w')
            f->width = d;
        else
            f->depth = d;
    } else if (strcmp(a, "--layers") == 0) {
        VALUE();
        if (parse_int_list(v, f->layers, 4) != 4) {
            fprintf(stderr, "cspresnet %s: --layers '%s' must be 4 comma-separated integers\n", cmd, v);
            return -1;
        }
        f->have_layers = 1;
    } else if (strcmp(a, "--channels") == 0) {
        VALUE();
        if (parse_int_list(v, f->channels, 5) != 5) {
            fprintf(stderr, "cspresnet %s: --channels '%s' must be 5 comma-separated integers\n", cmd, v);
            return -1;
        }
        f->have_channels = 1;
    } else if (strcmp(a, "--act") == 0) {
        VALUE();
        if (cspresnet_act_parse(v, &f->act) != CSPRESNET_OK) {
            fprintf(stderr,
                    "cspresnet %s: unknown activation '%s' (swish/silu, relu, leaky_relu, mish, hardswish, "
                    "gelu, relu6, sigmoid, none)\n", cmd, v);
            return -1;
        }
        f->act_given = 1;
    } else if (strcmp(a, "--large-stem") == 0) {
        f->large_stem = 1;
    } else if (strcmp(a, "--small-stem") == 0) {
        f->large_stem = 0;
    } else if (strcmp(a, "--alpha") == 0) {
        f->alpha = 1;
    } else if (strcmp(a, "--no-alpha") == 0) {
        f->alpha = 0;
    } else if (strcmp(a, "--return-idx") == 0) {
        VALUE();
        f->num_return = parse_int_list(v, f->return_idx, 4);
        if (return_idx_check(f->return_idx, f->num_return) != 0) {
            fprintf(stderr, "cspresnet %s: --return-idx '%s' must be 1 to 4 comma-separated stage indices (0..3)\n",
                    cmd, v);
            return -1;
        }
    } else {
        return 0;
    }
#undef VALUE
    return 1;
}

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
}

int quiet_flags_parse(common_flags *c, const char *a)
{
    if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
        c->quiet = 1;
        c->verbose = 0;
    } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
        c->verbose = 1;
        c->quiet = 0;
    } else {
        return 0;
    }
    return 1;
}

int common_flags_parse(common_flags *c, int argc, char **argv, int *i, const char *cmd)
{
    const char *a = argv[*i];
    if (quiet_flags_parse(c, a)) {
        return 1;
    } else if (strcmp(a, "--threads") == 0) {
        const char *v = flag_value(argc, argv, i, cmd);
        if (!v || parse_int_list(v, &c->threads, 1) != 1 || c->threads < 1 || c->threads > 1024) {
            if (v)
                fprintf(stderr, "cspresnet %s: --threads needs a count in 1..1024 (default: all CPUs)\n", cmd);
            return -1;
        }
        c->threads = cli_threads(c->threads, cmd);
    } else {
        return 0;
    }
    return 1;
}

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
