/* flags.c - the table-driven parser and --help of flags.h. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* The help column: a flag whose name and placeholder are wider gets its text on the
 * next line. */
#define HELP_COLUMN 24

/* The row named arg (or aliased so) in table, its options base in *base. */
static const cli_flag *find(const cli_flag *table, const char *arg, char *opts, char **base)
{
    for (const cli_flag *f = table; f->name; f++) {
        if (f->group) {
            const cli_flag *g = find(f->group, arg, opts + f->off, base);
            if (g)
                return g;
        } else if (f->name[0] && (strcmp(arg, f->name) == 0 || (f->alias && strcmp(arg, f->alias) == 0))) {
            *base = opts;
            return f;
        }
    }
    return NULL;
}

int cli_unknown(const cli_command *cmd, const char *arg)
{
    if (cmd->hint)
        fprintf(stderr, "cspresnet %s: unknown option '%s' (%s)\n", cmd->name, arg, cmd->hint);
    else
        fprintf(stderr, "cspresnet %s: unknown option '%s' (see cspresnet %s --help)\n", cmd->name, arg, cmd->name);
    return -1;
}

int cli_parse(const cli_command *cmd, void *opts, int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        char *base = NULL;
        const cli_flag *f = find(cmd->flags, argv[i], opts, &base);
        if (!f)
            f = find(STANDARD_FLAGS, argv[i], opts, &base);
        int r;
        if (!f) {
            r = cmd->positional ? cmd->positional(opts, argv[i], cmd) : cli_unknown(cmd, argv[i]);
        } else if (f->meta && i + 1 >= argc) {
            fprintf(stderr, "cspresnet %s: %s needs a value (see cspresnet %s --help)\n", cmd->name, argv[i],
                    cmd->name);
            r = -1;
        } else {
            r = f->parse(f, f->meta ? argv[++i] : NULL, base + f->off, cmd);
        }
        if (r == CLI_STOP)
            return 0;
        if (r != 0)
            return EXIT_USAGE;
    }
    return CLI_PARSED;
}

/* Prints text's lines, the first after `used` columns, every line from the help column. */
static void help_text(FILE *out, const char *text, int used)
{
    while (text && *text) {
        const char *nl = strchr(text, '\n');
        int len = nl ? (int)(nl - text) : (int)strlen(text);
        fprintf(out, "%*s%.*s\n", HELP_COLUMN - used, "", len, text);
        used = 0;
        text = nl ? nl + 1 : text + len;
    }
    if (used) /* a row without help text */
        fputc('\n', out);
}

static void help_rows(const cli_flag *table, FILE *out)
{
    for (const cli_flag *f = table; f->name; f++) {
        if (f->group) {
            help_rows(f->group, out);
        } else if (!f->name[0]) {
            fprintf(out, "%s\n", f->help);
        } else {
            int used = fprintf(out, "  %s%s%s%s%s", f->alias ? f->alias : "", f->alias ? ", " : "", f->name,
                               f->meta ? " " : "", f->meta ? f->meta : "");
            if (used > HELP_COLUMN - 2) {
                fputc('\n', out);
                used = 0;
            }
            help_text(out, f->help, used);
        }
    }
}

void cli_help(const cli_command *cmd, FILE *out)
{
    fputs(cmd->synopsis, out);
    help_rows(cmd->flags, out);
    help_rows(STANDARD_FLAGS, out);
    if (cmd->notes)
        fputs(cmd->notes, out);
}

int cli_refuse(const cli_flag *f, const char *value, const cli_command *cmd)
{
    fprintf(stderr, "cspresnet %s: ", cmd->name);
    fprintf(stderr, f->bad, value);
    fputc('\n', stderr);
    return -1;
}

int cli_str(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    (void)f, (void)cmd;
    *(const char **)dest = v;
    return 0;
}

int cli_set(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    (void)v, (void)cmd;
    *(int *)dest = (int)f->lo;
    return 0;
}

int cli_count(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    int n;
    if (parse_int_list(v, &n, 1) != 1 || n < f->lo || n > f->hi) {
        if (f->bad)
            return cli_refuse(f, v, cmd);
        fprintf(stderr, "cspresnet %s: %s needs a count in %d..%d\n", cmd->name, f->name, (int)f->lo, (int)f->hi);
        return -1;
    }
    *(int *)dest = n;
    return 0;
}

int cli_size(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    int hw[2];
    if (parse_size(v, hw, (int)f->hi) != 0)
        return cli_refuse(f, v, cmd);
    memcpy(dest, hw, sizeof hw);
    return 0;
}

int cli_pick(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    for (const cli_choice *c = f->choices; c->word; c++)
        if (strcmp(v, c->word) == 0) {
            *(int *)dest = c->value;
            return 0;
        }
    return cli_refuse(f, v, cmd);
}

/* The value as a number in [lo, hi], stored as kind ('i' int, 'l' long, 'u' uint64_t,
 * 'd' double), or -1 after saying why not. */
static int number(const cli_flag *f, const char *v, const cli_command *cmd, void *dest, char kind)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= f->lo && d <= f->hi)) {
        fprintf(stderr, "cspresnet %s: %s '%s' must be a number in [%g, %g]\n", cmd->name, f->name, v, f->lo, f->hi);
        return -1;
    }
    if (kind == 'i')
        *(int *)dest = (int)d;
    else if (kind == 'l')
        *(long *)dest = (long)d;
    else if (kind == 'u')
        *(uint64_t *)dest = (uint64_t)d;
    else
        *(double *)dest = d;
    return 0;
}

int cli_num_int(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    return number(f, v, cmd, dest, 'i');
}

int cli_num_long(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    return number(f, v, cmd, dest, 'l');
}

int cli_num_u64(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    return number(f, v, cmd, dest, 'u');
}

int cli_num(const cli_flag *f, const char *v, void *dest, const cli_command *cmd)
{
    return number(f, v, cmd, dest, 'd');
}
