/*
 * progress.c - the progress line of long CLI jobs: "[=====>    ] 12/40 images
 * 3.1/s ETA 9s" redrawn in place on stderr. Only on a terminal and without -q;
 * colour (a green bar) unless NO_COLOR is set to anything.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "progress.h"

#define BAR_WIDTH 30

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

void progress_init(progress *p, size_t total, const char *what, int quiet)
{
    p->enabled = !quiet && isatty(STDERR_FILENO);
    p->color = p->enabled && getenv("NO_COLOR") == NULL;
    p->total = total;
    p->done = 0;
    p->start = now_seconds();
    p->what = what;
    if (p->enabled)
        progress_update(p, 0);
}

void progress_update(progress *p, size_t done)
{
    p->done = done;
    if (!p->enabled)
        return;
    double elapsed = now_seconds() - p->start;
    double rate = elapsed > 0 && done > 0 ? done / elapsed : 0;
    int fill = p->total ? (int)(BAR_WIDTH * done / p->total) : BAR_WIDTH;
    char bar[BAR_WIDTH + 1];
    for (int i = 0; i < BAR_WIDTH; i++)
        bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[BAR_WIDTH] = '\0';
    char eta[32] = "ETA --";
    if (rate > 0 && p->total >= done)
        snprintf(eta, sizeof eta, "ETA %.0fs", (p->total - done) / rate);
    fprintf(stderr, "\r%s[%s]%s %zu/%zu %s  %.2f/s  %s\033[K", p->color ? "\033[32m" : "", bar,
            p->color ? "\033[0m" : "", done, p->total, p->what, rate, eta);
    fflush(stderr);
}

void progress_finish(progress *p)
{
    if (p->enabled) {
        progress_update(p, p->done);
        fputc('\n', stderr);
    }
}
