/*
 * peak_rss.c - the peak resident memory of this process, for the reports of `bench`
 * and `train`.
 */
#include <stdio.h>
#include <sys/resource.h>

#include "cli.h"

/* VmHWM from /proc/self/status, in MiB. getrusage's ru_maxrss survives execve, so a
 * command started from a big parent (a Python harness with torch loaded: 226 MB)
 * reported the parent's size rather than its own; ru_maxrss is only the fallback
 * where /proc is missing. */
double cli_peak_rss_mib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    if (kb >= 0)
        return (double)kb / 1024.0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;
}
