/*
 * pickle_arena.c - the memory of the pickle interpreter (pickle.c): objects come from
 * an arena of 64 KiB chunks (a large block gets a chunk of its own), capped at
 * PK_MAX_ARENA; decoded byte strings are "blobs" that the caller may take over, capped
 * at the size of the pickle. Also the "<name>: <message>" error formatting shared by
 * the interpreter's files.
 */
#include "io/pickle.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PK_CHUNK_SIZE ((size_t)64 * 1024)
#define PK_ALIGN ((size_t)16)

struct pk_chunk {
    pk_chunk *next;
    size_t used;
    size_t cap;
};

/* Chunk payload starts after the header rounded up to PK_ALIGN. */
#define PK_CHUNK_HEADER ((sizeof(pk_chunk) + PK_ALIGN - 1) / PK_ALIGN * PK_ALIGN)

/* ---------------------------------------------------------------- messages */

cspresnet_status pk_fail(pk_unpickler *u, cspresnet_status code, const char *fmt, ...)
{
    char msg[sizeof u->err->text];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return error_set(u->err, code, "%s: %s", u->name, msg);
}

/* ---------------------------------------------------------------- arena */

cspresnet_status pk_out_of_memory(pk_unpickler *u, size_t size)
{
    u->alloc_status = pk_fail(u, CSPRESNET_ERR_MEMORY,
                              "out of memory allocating %zu bytes at offset %zu", size,
                              u->op_offset);
    return u->alloc_status;
}

void *pk_arena_alloc(pk_unpickler *u, size_t size)
{
    size = (size + PK_ALIGN - 1) / PK_ALIGN * PK_ALIGN;
    if (size == 0)
        size = PK_ALIGN;
    pk_chunk *c = u->chunks;
    if (!c || c->cap - c->used < size) {
        size_t cap = size > PK_CHUNK_SIZE / 4 ? size : PK_CHUNK_SIZE;
        if (cap > PK_MAX_ARENA || u->arena_bytes > PK_MAX_ARENA - cap) {
            u->alloc_status = pk_fail(u, CSPRESNET_ERR_FORMAT,
                                      "pickle needs more than the interpreter limit of %zu "
                                      "bytes of objects (at offset %zu)",
                                      (size_t)PK_MAX_ARENA, u->op_offset);
            return NULL;
        }
        pk_chunk *n = malloc(PK_CHUNK_HEADER + cap);
        if (!n) {
            pk_out_of_memory(u, cap);
            return NULL;
        }
        n->used = 0;
        n->cap = cap;
        u->arena_bytes += cap;
        if (c && size > PK_CHUNK_SIZE / 4) {
            /* a big one-off block: keep the current chunk on top for small objects */
            n->next = c->next;
            c->next = n;
        } else {
            n->next = c;
            u->chunks = n;
        }
        c = n;
    }
    void *p = (unsigned char *)c + PK_CHUNK_HEADER + c->used;
    c->used += size;
    return p;
}

pk_obj *pk_new(pk_unpickler *u, pk_kind kind)
{
    pk_obj *o = pk_arena_alloc(u, sizeof *o);
    if (!o)
        return NULL;
    memset(o, 0, sizeof *o);
    o->kind = kind;
    o->offset = u->op_offset;
    return o;
}

uint8_t *pk_new_blob(pk_unpickler *u, size_t size)
{
    if (size > u->size - u->blob_bytes) {
        /* Decoding shrinks text, so honest files never get here: only a memoized text
         * decoded again and again (REDUCE after BINGET) can, to inflate memory. */
        u->alloc_status = pk_fail(u, CSPRESNET_ERR_FORMAT,
                                  "decoded byte strings at offset %zu would total more than "
                                  "the %zu bytes of the pickle itself (the same text decoded "
                                  "repeatedly?)", u->op_offset, u->size);
        return NULL;
    }
    pk_blob *b = malloc(sizeof *b + size + 1);
    if (!b) {
        pk_out_of_memory(u, size);
        return NULL;
    }
    u->blob_bytes += size;
    b->size = size;
    b->next = u->blobs;
    u->blobs = b;
    return (uint8_t *)(b + 1);
}

pk_blob *pk_take_blobs(pk_unpickler *u)
{
    pk_blob *b = u->blobs;
    u->blobs = NULL;
    return b;
}

void pk_blobs_free(pk_blob *b)
{
    while (b) {
        pk_blob *next = b->next;
        free(b);
        b = next;
    }
}

void pk_init(pk_unpickler *u, const uint8_t *data, size_t size, const char *name)
{
    memset(u, 0, sizeof *u);
    u->data = data;
    u->size = size;
    u->name = name ? name : "(pickle)";
}

void pk_free(pk_unpickler *u)
{
    pk_chunk *c = u->chunks;
    while (c) {
        pk_chunk *next = c->next;
        free(c);
        c = next;
    }
    pk_blobs_free(u->blobs);
    free(u->stack);
    free(u->marks);
    free(u->memo);
    memset(u, 0, sizeof *u);
}
