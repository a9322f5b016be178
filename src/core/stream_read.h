/*
 * stream_read.h - reading a file that cannot be mapped or read twice (a pipe, a FIFO,
 * /dev/stdin, a character device) once, whole, into memory.
 *
 * Weight readers tell formats apart by their first bytes; on a stream those bytes are
 * gone once read, and a FIFO reopened after its writer has finished blocks forever.
 * So a stream is read exactly once, here, and parsed from memory.
 */
#ifndef CSPRESNET_CORE_STREAM_READ_H
#define CSPRESNET_CORE_STREAM_READ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/status.h"

/* How many leading bytes a stream_stop_fn sees (fewer only when the stream is shorter). */
#define STREAM_HEAD_BYTES 9

/* Called once, with the first STREAM_HEAD_BYTES bytes (or all of a shorter stream):
 * returning 1 stops the read there, so that a stream that is no weight file at all
 * (/dev/zero, a text) is not read to its end; the parser then reports those bytes. */
typedef int (*stream_stop_fn)(const uint8_t *head, size_t n);

/* Reads f from its current position to its end into a malloc'd *buf (*size bytes; the
 * caller frees it). More than limit bytes is an error naming name and the limit,
 * reported as soon as the limit is passed (nothing beyond it is kept). The buffer grows
 * only with the bytes that arrive. stop may be NULL. */
cspresnet_status stream_read_all(FILE *f, const char *name, uint64_t limit, stream_stop_fn stop, uint8_t **buf,
                                 size_t *size, error_buf *err);

#endif
