/*
 * progress.h - a progress line for long CLI jobs (infer over many images, demo, train).
 * Drawn on stderr only when stderr is a terminal and -q was not given; coloured unless
 * NO_COLOR is set (https://no-color.org). When it is off, callers print plain lines.
 */
#ifndef CSPRESNET_CLI_PROGRESS_H
#define CSPRESNET_CLI_PROGRESS_H

#include <stddef.h>

/* done/total, items per second and ETA; `what` names the items ("images", "steps"). */
typedef struct progress {
    int enabled, color;
    size_t total, done;
    double start;
    const char *what;
} progress;
void progress_init(progress *p, size_t total, const char *what, int quiet);
void progress_update(progress *p, size_t done);
void progress_finish(progress *p);
/* Seconds on a monotonic clock. */
double now_seconds(void);

#endif
