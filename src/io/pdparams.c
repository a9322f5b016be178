/*
 * pdparams.c - state dicts from .pdparams files (SPEC §3).
 *
 * The file is read whole into memory that the state_dict keeps; the safe pickle
 * interpreter (pickle.c) runs over it and the top-level dict becomes array entries
 * whose raw pointers point into that copy (zero copy) or, for protocol 2, into the
 * latin-1 decoded blobs that the state_dict also keeps. The interpreter's objects are
 * freed before returning. Float conversion is in array_convert.c.
 *
 * Decisions:
 *   - The top level must be a dict with str keys; values that are not ndarrays (the
 *     "StructuredToParameterName@@" dict, numbers, ...) are counted in
 *     skipped_non_array.
 *   - Duplicate keys: the later value wins, kept at the position of the first, which
 *     is what Python's pickle.load (and so paddle.load) produces.
 *   - Bytes after STOP are ignored, as pickle.load does.
 *   - Keys must be valid UTF-8 (checked when read) without NUL characters.
 *   - Arrays are checked here with their key: shape entries are ints >= 0, at most
 *     PDPARAMS_MAX_NDIM dimensions, numel * itemsize does not overflow and equals the
 *     data length. Dtypes other than f4/f8/f2 become DTYPE_OTHER and are refused only
 *     by array_to_f32; a dtype whose item size is unknown (structured, 'float32'...) is
 *     refused here.
 *   - Limits (pdparams.h): file size, key length, number of keys, and the total array
 *     bytes against the file size (memoized arrays shared by many keys), all checked
 *     before anything is allocated for them. A stream that does not start with the
 *     PROTO opcode is not read to its end.
 */
#include "io/pdparams.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/pages.h"
#include "core/stream_read.h"
#include "io/pickle.h"

typedef struct sd_storage {
    uint8_t *file;                 /* the whole file */
    size_t file_size;
    int mapped;                    /* file is a read-only private mapping (munmap, not free) */
    int borrowed;                  /* file belongs to the caller (neither freed nor unmapped) */
    pk_blob *blobs;                /* decoded protocol-2 byte strings */
    char *keys;                    /* all keys, NUL-terminated, back to back */
    const array_entry **sorted;    /* entries by key, for state_dict_find */
} sd_storage;

typedef struct key_ref {
    const uint8_t *ptr;
    size_t len;
    size_t pos;                    /* index of the pair in the dict */
} key_ref;

static int host_big_endian(void)
{
    const uint16_t one = 1;
    unsigned char c;
    memcpy(&c, &one, 1);
    return c == 0;
}

static int cmp_key_ref(const void *pa, const void *pb)
{
    const key_ref *a = pa, *b = pb;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n && a->ptr != b->ptr ? memcmp(a->ptr, b->ptr, n) : 0;  /* memoized: same text */
    if (c)
        return c;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int cmp_entry_ptr(const void *pa, const void *pb)
{
    const array_entry *a = *(const array_entry *const *)pa;
    const array_entry *b = *(const array_entry *const *)pb;
    return strcmp(a->key, b->key);
}

static void format_shape(const int64_t *shape, int ndim, char *out, size_t n)
{
    size_t o = 0;
    o += (size_t)snprintf(out, n, "(");
    for (int i = 0; i < ndim && o < n; i++)
        o += (size_t)snprintf(out + o, n - o, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (o < n)
        snprintf(out + o, n - o, ndim == 1 ? ",)" : ")");
}

static void storage_free(sd_storage *s)
{
    if (!s)
        return;
    if (s->mapped)
        munmap(s->file, s->file_size);
    else if (!s->borrowed)
        free(s->file);
    pk_blobs_free(s->blobs);
    free(s->keys);
    free(s->sorted);
    free(s);
}

void state_dict_free(state_dict *sd)
{
    if (!sd)
        return;
    storage_free(sd->storage);
    free(sd->entries);
    free(sd->others);
    memset(sd, 0, sizeof *sd);
}

/* Fills e (all but the key) from an ndarray object. key is printable, for messages. */
static cspresnet_status fill_entry(const char *name, const char *key, const pk_obj *obj,
                                   array_entry *e, error_buf *err)
{
    const pk_ndarray *a = &obj->u.arr;
    if (!a->built)
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: key '%s': the ndarray made at offset %zu never got its state "
                         "(no BUILD)", name, key, obj->offset);
    const pk_dtype *d = &a->dtype->u.dtype;
    memcpy(e->dtype_str, d->str, sizeof e->dtype_str);
    e->dtype_str[sizeof e->dtype_str - 1] = '\0';
    if (d->itemsize == 0 || d->structured)
        return error_set(err, CSPRESNET_ERR_UNSUPPORTED,
                         "%s: key '%s': dtype '%s' (array at offset %zu) is not supported",
                         name, key, d->str, obj->offset);
    if (d->kind == 'f' && d->itemsize == 4)
        e->dtype = DTYPE_F32;
    else if (d->kind == 'f' && d->itemsize == 8)
        e->dtype = DTYPE_F64;
    else if (d->kind == 'f' && d->itemsize == 2)
        e->dtype = DTYPE_F16;
    else
        e->dtype = DTYPE_OTHER;
    e->big_endian = d->byteorder == '>' || (d->byteorder == '=' && host_big_endian());
    e->fortran_order = a->fortran;

    const pk_seq *shape = &a->shape->u.seq;
    if (shape->len > PDPARAMS_MAX_NDIM)
        return error_set(err, CSPRESNET_ERR_UNSUPPORTED,
                         "%s: key '%s': %zu dimensions (array at offset %zu); at most %d are "
                         "supported", name, key, shape->len, obj->offset, PDPARAMS_MAX_NDIM);
    e->ndim = (int)shape->len;
    int64_t numel = 1;
    int overflow = 0;
    for (int i = 0; i < e->ndim; i++) {
        const pk_obj *dim = shape->items[i];
        if (dim->kind != PK_INT)
            return error_set(err, CSPRESNET_ERR_FORMAT,
                             "%s: key '%s': shape entry %d is a %s, not an int (array at "
                             "offset %zu)", name, key, i, pk_kind_name(dim->kind), obj->offset);
        if (dim->u.i < 0)
            return error_set(err, CSPRESNET_ERR_FORMAT,
                             "%s: key '%s': shape entry %d is negative (%lld) (array at "
                             "offset %zu)", name, key, i, (long long)dim->u.i, obj->offset);
        e->shape[i] = dim->u.i;
        if (dim->u.i && numel > INT64_MAX / dim->u.i)
            overflow = 1;
        else
            numel *= dim->u.i;
    }
    char shp[256];
    format_shape(e->shape, e->ndim, shp, sizeof shp);
    if (overflow || (uint64_t)numel > (uint64_t)SIZE_MAX / d->itemsize ||
        (uint64_t)numel > (uint64_t)INT64_MAX / d->itemsize)
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: key '%s': shape %s of dtype '%s' is too large (array at offset "
                         "%zu)", name, key, shp, d->str, obj->offset);
    e->numel = numel;
    const pk_bytes *data = &a->data->u.b;
    size_t need = (size_t)numel * d->itemsize;
    if (data->len != need)
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: key '%s': data holds %zu bytes but shape %s of dtype '%s' needs "
                         "%zu (data at offset %zu)", name, key, data->len, shp, d->str, need,
                         data->data_offset);
    e->raw = data->ptr;
    e->raw_size = data->len;
    e->file_offset = data->data_offset;
    return CSPRESNET_OK;
}

/* Turns the top-level dict into entries. */
static cspresnet_status build_entries(const char *name, const pk_obj *root, state_dict *out,
                                      sd_storage *s, error_buf *err)
{
    if (root->kind != PK_DICT)
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: the top-level object is a %s, not a dict of arrays", name,
                         pk_kind_name(root->kind));
    size_t n = root->u.seq.len;
    pk_obj **items = root->u.seq.items;
    cspresnet_status st = CSPRESNET_OK;
    if (n > PDPARAMS_MAX_ENTRIES)
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: the top-level dict has %zu entries, more than the limit of %u",
                         name, n, PDPARAMS_MAX_ENTRIES);
    key_ref *refs = malloc((n ? n : 1) * sizeof *refs);
    size_t *winner = malloc((n ? n : 1) * sizeof *winner);  /* first pos -> last pos */
    if (!refs || !winner) {
        st = error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory for %zu keys", name, n);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const pk_obj *k = items[2 * i];
        if (k->kind != PK_STR) {
            st = error_set(err, CSPRESNET_ERR_FORMAT,
                           "%s: top-level dict key number %zu has type %s, not str (made "
                           "at offset %zu)", name, i, pk_kind_name(k->kind), k->offset);
            goto done;
        }
        if (k->u.b.len > PDPARAMS_MAX_KEY_LEN) {
            st = error_set(err, CSPRESNET_ERR_FORMAT,
                           "%s: top-level dict key number %zu (offset %zu) is %zu bytes long, "
                           "more than the limit of %u", name, i, k->u.b.data_offset, k->u.b.len,
                           PDPARAMS_MAX_KEY_LEN);
            goto done;
        }
        if (memchr(k->u.b.ptr, '\0', k->u.b.len)) {
            char kp[200];
            pk_printable(k->u.b.ptr, k->u.b.len, kp, sizeof kp);
            st = error_set(err, CSPRESNET_ERR_FORMAT,
                           "%s: key '%s' (offset %zu) contains a NUL character", name, kp,
                           k->u.b.data_offset);
            goto done;
        }
        refs[i] = (key_ref){k->u.b.ptr, k->u.b.len, i};
        winner[i] = SIZE_MAX;
    }
    if (n)
        qsort(refs, n, sizeof *refs, cmp_key_ref);
    size_t unique = 0, key_bytes = 0;
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && refs[j].len == refs[i].len &&
               (refs[i].len == 0 || memcmp(refs[j].ptr, refs[i].ptr, refs[i].len) == 0))
            j++;
        winner[refs[i].pos] = refs[j - 1].pos;  /* sorted by position inside a group */
        unique++;
        key_bytes += refs[i].len + 1;
        i = j;
    }

    size_t arrays = 0;
    for (size_t i = 0; i < n; i++)
        if (winner[i] != SIZE_MAX && items[2 * winner[i] + 1]->kind == PK_NDARRAY)
            arrays++;
    out->entries = calloc(arrays ? arrays : 1, sizeof *out->entries);
    out->others = calloc(unique - arrays + 1, sizeof *out->others);
    s->keys = malloc(key_bytes ? key_bytes : 1);
    s->sorted = malloc((arrays ? arrays : 1) * sizeof *s->sorted);
    if (!out->entries || !out->others || !s->keys || !s->sorted) {
        st = error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory for %zu entries", name,
                       arrays);
        goto done;
    }
    uint64_t data_bytes = 0;
    char *kp = s->keys;
    out->count = 0;
    out->skipped_non_array = unique - arrays;
    size_t n_others = 0;
    for (size_t i = 0; i < n; i++) {
        if (winner[i] == SIZE_MAX)
            continue;
        const pk_obj *value = items[2 * winner[i] + 1];
        const pk_bytes *k = &items[2 * i]->u.b;
        if (value->kind != PK_NDARRAY) {
            memcpy(kp, k->ptr, k->len);
            kp[k->len] = '\0';
            out->others[n_others++] = (other_entry){kp, pk_kind_name(value->kind)};
            kp += k->len + 1;
            continue;
        }
        array_entry *e = &out->entries[out->count];
        memcpy(kp, k->ptr, k->len);
        kp[k->len] = '\0';
        e->key = kp;
        kp += k->len + 1;
        char key_print[200];
        pk_printable(k->ptr, k->len, key_print, sizeof key_print);
        if ((st = fill_entry(name, key_print, value, e, err)) != CSPRESNET_OK)
            goto done;
        data_bytes += e->raw_size;
        if (data_bytes > (uint64_t)s->file_size + PDPARAMS_SHARED_SLACK) {
            st = error_set(err, CSPRESNET_ERR_FORMAT,
                           "%s: key '%s': the arrays up to this one hold %llu bytes, more than "
                           "the file's %zu bytes plus %llu: array data is shared between keys "
                           "(memo) beyond the limit", name, key_print,
                           (unsigned long long)data_bytes, s->file_size,
                           (unsigned long long)PDPARAMS_SHARED_SLACK);
            goto done;
        }
        s->sorted[out->count] = e;
        out->count++;
    }
    if (out->count)
        qsort(s->sorted, out->count, sizeof *s->sorted, cmp_entry_ptr);
done:
    free(refs);
    free(winner);
    return st;
}

/* safetensors (an 8-byte little-endian header length >= 2, then the JSON header's '{'),
 * the other weight format: told apart so that the message can say where to load it. */
static int looks_like_safetensors(const uint8_t *b, size_t n)
{
    if (n < 9 || b[0] == 0x80 || b[8] != '{')
        return 0;
    uint64_t len = 0;
    for (int i = 0; i < 8; i++)
        len |= (uint64_t)b[i] << (8 * i);
    return len >= 2;
}

/* Parses buf (taking it over unless borrowed: it is kept by *out or freed/unmapped). */
static cspresnet_status parse_buffer(uint8_t *buf, size_t size, int mapped, int borrowed,
                                     const char *name, state_dict *out, error_buf *err)
{
    memset(out, 0, sizeof *out);
    sd_storage *s = calloc(1, sizeof *s);
    if (!s) {
        if (mapped)
            munmap(buf, size);
        else if (!borrowed)
            free(buf);
        return error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory", name);
    }
    s->file = buf;
    s->file_size = size;
    s->mapped = mapped;
    s->borrowed = borrowed;

    pk_unpickler u;
    pk_obj *root = NULL;
    pk_init(&u, buf, size, name);
    cspresnet_status st =
        looks_like_safetensors(buf, size)
            ? error_set(err, CSPRESNET_ERR_FORMAT,
                        "%s is a safetensors file, not a .pdparams pickle: load it with cspresnet_formats.h "
                        "(cspresnet_model_load_safetensors, or cspresnet_model_load_safetensors_memory for "
                        "bytes in memory; link -lcspresnet_formats -ljansson)", name)
            : pk_load(&u, &root, err);
    if (st == CSPRESNET_OK)
        st = build_entries(name, root, out, s, err);
    s->blobs = pk_take_blobs(&u);
    pk_free(&u);
    if (st != CSPRESNET_OK) {
        storage_free(s);
        free(out->entries);
        free(out->others);
        memset(out, 0, sizeof *out);
        return st;
    }
    out->storage = s;
    return CSPRESNET_OK;
}

/* The arguments of the two in-memory readers: out cleared, NULL data only when empty. */
/* The checks the two memory readers share; *name defaults to "(memory)". */
static cspresnet_status memory_args(const uint8_t *data, size_t size, const char **name, state_dict *out,
                                    error_buf *err)
{
    if (!*name)
        *name = "(memory)";
    if (!out)
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "%s: no state_dict to fill", *name);
    memset(out, 0, sizeof *out);
    if (!data && size)
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "%s: NULL data", *name);
    return CSPRESNET_OK;
}

cspresnet_status pdparams_read_memory(const uint8_t *data, size_t size, const char *name,
                                      state_dict *out, error_buf *err)
{
    cspresnet_status st = memory_args(data, size, &name, out, err);
    if (st != CSPRESNET_OK)
        return st;
    uint8_t *copy = malloc(size ? size : 1);
    if (!copy)
        return error_set(err, CSPRESNET_ERR_MEMORY, "%s: out of memory copying %zu bytes", name,
                         size);
    if (size)
        memcpy(copy, data, size);
    return parse_buffer(copy, size, 0, 0, name, out, err);
}

cspresnet_status pdparams_read_borrowed(const uint8_t *data, size_t size, const char *name,
                                        state_dict *out, error_buf *err)
{
    cspresnet_status st = memory_args(data, size, &name, out, err);
    if (st != CSPRESNET_OK)
        return st;
    static const uint8_t empty[1];
    /* the parser only reads the bytes; the cast keeps one storage type for all three cases */
    return parse_buffer((uint8_t *)(uintptr_t)(data ? data : empty), size, 0, 1, name, out, err);
}

/* A non-empty regular file within the size limit, mapped read-only: its pages cost
 * memory only while touched, and state_dict_release gives a copied tensor's pages
 * back, so loading needs the model's weights plus little more (a malloc'd copy of
 * the file doubled the peak). 0: not mapped (not regular, empty, too large, error);
 * the caller reads the file instead and reports any problem. */
static int map_regular_file(const char *path, uint8_t **buf, size_t *size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    struct stat sb;
    void *p = MAP_FAILED;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && sb.st_size > 0 &&
        (uint64_t)sb.st_size <= PDPARAMS_MAX_FILE_BYTES)
        p = mmap(NULL, (size_t)sb.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return 0;
    *buf = p;
    *size = (size_t)sb.st_size;
    return 1;
}

static int not_a_pickle(const uint8_t *head, size_t n)
{
    return n == 0 || head[0] != 0x80;
}

/* Reads the whole file (regular or not) into a malloc'd buffer, once: a pipe or FIFO
 * cannot be read twice. A stream (pipe, /dev/zero) that is no pickle is not read to
 * its end: the parser reports its first bytes. */
static cspresnet_status read_whole_file(const char *path, uint8_t **buf, size_t *size,
                                        error_buf *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return error_set(err, CSPRESNET_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0) {
        int e = errno;
        fclose(f);
        return error_set(err, CSPRESNET_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (S_ISDIR(sb.st_mode)) {
        fclose(f);
        return error_set(err, CSPRESNET_ERR_IO, "%s: is a directory", path);
    }
    if (S_ISREG(sb.st_mode) && (uint64_t)sb.st_size > PDPARAMS_MAX_FILE_BYTES) {
        fclose(f);
        return error_set(err, CSPRESNET_ERR_FORMAT,
                         "%s: %llu bytes is more than the limit of %llu bytes for a weight file",
                         path, (unsigned long long)sb.st_size,
                         (unsigned long long)PDPARAMS_MAX_FILE_BYTES);
    }
    cspresnet_status st = stream_read_all(f, path, PDPARAMS_MAX_FILE_BYTES, not_a_pickle, buf, size, err);
    fclose(f);
    return st;
}

cspresnet_status pdparams_read_file(const char *path, state_dict *out, error_buf *err)
{
    if (!out)
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "pdparams_read_file: no state_dict");
    memset(out, 0, sizeof *out);
    if (!path)
        return error_set(err, CSPRESNET_ERR_ARGUMENT, "pdparams_read_file: NULL path");
    uint8_t *buf = NULL;
    size_t size = 0;
    if (map_regular_file(path, &buf, &size))
        return parse_buffer(buf, size, 1, 0, path, out, err);
    cspresnet_status st = read_whole_file(path, &buf, &size, err);
    if (st != CSPRESNET_OK)
        return st;
    return parse_buffer(buf, size, 0, 0, path, out, err);
}

void state_dict_release(const state_dict *sd, const array_entry *e)
{
    const sd_storage *s = sd ? sd->storage : NULL;
    if (!s || !s->mapped || !e || !e->raw)
        return;
    pages_release(e->raw, e->raw_size); /* read again from the file if touched */
}

const array_entry *state_dict_find(const state_dict *sd, const char *key)
{
    if (!sd || !key || sd->count == 0)
        return NULL;
    if (!sd->storage) { /* a view another reader built: no sorted index */
        for (size_t i = 0; i < sd->count; i++)
            if (strcmp(key, sd->entries[i].key) == 0)
                return &sd->entries[i];
        return NULL;
    }
    const sd_storage *s = sd->storage;
    size_t lo = 0, hi = sd->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(key, s->sorted[mid]->key);
        if (c == 0)
            return s->sorted[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}
