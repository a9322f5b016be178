/*
 * image_inputs.c - what `infer` (and the demo) were asked to read: image files,
 * folders of images (their .jpg/.jpeg/.png entries, sorted by name, not recursive)
 * and list files (.txt/.lst/.list: one path per line, blank lines and '#' comments
 * skipped, relative paths taken from the list file's folder, as .m3u playlist readers
 * do, so a list works from any current directory). A folder without images and a list
 * without paths are errors, naming the folder or file.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "image.h"

static int push(input_list *l, const char *path, char *err, size_t n)
{
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **grown = realloc(l->paths, cap * sizeof *grown);
        if (!grown) {
            snprintf(err, n, "out of memory");
            return -1;
        }
        l->paths = grown;
        l->cap = cap;
    }
    if (!(l->paths[l->count] = strdup(path))) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    l->count++;
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int add_dir(input_list *l, const char *dir, char *err, size_t n)
{
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, n, "%s: cannot open folder: %s", dir, strerror(errno));
        return -1;
    }
    size_t first = l->count;
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d))) {
        if (e->d_name[0] == '.' || !image_has_image_suffix(e->d_name))
            continue;
        size_t len = strlen(dir) + strlen(e->d_name) + 2;
        char *p = malloc(len);
        if (!p) {
            snprintf(err, n, "out of memory");
            rc = -1;
            break;
        }
        snprintf(p, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", e->d_name);
        rc = push(l, p, err, n);
        free(p);
    }
    closedir(d);
    if (rc == 0 && l->count == first) {
        snprintf(err, n, "%s: no .jpg, .jpeg or .png files in this folder", dir);
        return -1;
    }
    qsort(l->paths + first, l->count - first, sizeof *l->paths, by_name);
    return rc;
}

static int is_list_file(const char *path)
{
    const char *dot = strrchr(path, '.');
    return dot && (strcasecmp(dot, ".txt") == 0 || strcasecmp(dot, ".lst") == 0 || strcasecmp(dot, ".list") == 0);
}

static int add_list(input_list *l, const char *path, char *err, size_t n)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, n, "%s: cannot open list file: %s", path, strerror(errno));
        return -1;
    }
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0; /* "dir/" kept; none: the current folder */
    char *line = NULL, *joined = NULL;
    size_t cap = 0, first = l->count;
    ssize_t len;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &cap, f)) >= 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = '\0';
        char *p = line;
        while (*p == ' ' || *p == '\t')
            p++;
        if (!*p || *p == '#')
            continue;
        if (*p == '/' || dir_len == 0) {
            rc = push(l, p, err, n);
            continue;
        }
        char *grown = realloc(joined, dir_len + strlen(p) + 1);
        if (!grown) {
            snprintf(err, n, "out of memory");
            rc = -1;
            break;
        }
        joined = grown;
        memcpy(joined, path, dir_len);
        strcpy(joined + dir_len, p);
        rc = push(l, joined, err, n);
    }
    int read_error = ferror(f);
    free(joined);
    free(line);
    fclose(f);
    if (rc == 0 && read_error) {
        snprintf(err, n, "%s: cannot read list file", path);
        return -1;
    }
    if (rc == 0 && l->count == first) {
        snprintf(err, n, "%s: no image paths in this list file (only blank lines and # comments)", path);
        return -1;
    }
    return rc;
}

int input_list_add(input_list *l, const char *arg, char *err, size_t err_size)
{
    struct stat st;
    if (stat(arg, &st) == 0 && S_ISDIR(st.st_mode))
        return add_dir(l, arg, err, err_size);
    if (is_list_file(arg))
        return add_list(l, arg, err, err_size);
    return push(l, arg, err, err_size); /* an image; a missing or bad file fails when read */
}

void input_list_free(input_list *l)
{
    for (size_t i = 0; i < l->count; i++)
        free(l->paths[i]);
    free(l->paths);
    memset(l, 0, sizeof *l);
}
