/*
 * fashion_mnist.h - reads the Fashion-MNIST IDX files (gzip-compressed, read through
 * zlib) for `cspresnet train`. Part of the CLI, not the library: the library needs
 * only libc, libm and pthreads.
 *
 * Files (Debian's dataset-fashion-mnist, /usr/share/datasets/fashion-mnist/):
 *   {train,t10k}-images-idx3-ubyte.gz  magic 0x00000803, count, 28, 28, then bytes
 *   {train,t10k}-labels-idx1-ubyte.gz  magic 0x00000801, count, then bytes 0..9
 * (big-endian 32-bit header fields).
 */
#ifndef CSPRESNET_CLI_FASHION_MNIST_H
#define CSPRESNET_CLI_FASHION_MNIST_H

#include <stddef.h>
#include <stdint.h>

#define FMNIST_DEFAULT_DIR "/usr/share/datasets/fashion-mnist"
#define FMNIST_SIDE 28
#define FMNIST_CLASSES 10
/* Per-pixel mean and standard deviation of the training images (pixel / 255). */
#define FMNIST_MEAN 0.2860f
#define FMNIST_STD 0.3530f

typedef struct fmnist_split {
    int count;
    uint8_t *images;  /* count x 28 x 28 */
    uint8_t *labels;  /* count */
} fmnist_split;

/* Reads split "train" or "t10k" from dir; at most limit images (0: all). On failure
 * returns -1 with a message naming the file and the offending field in err. */
int fmnist_load(const char *dir, const char *split, int limit, fmnist_split *out, char *err,
                size_t err_size);
void fmnist_free(fmnist_split *s);

/* Image i as 3 x size x size floats (gray copied to 3 channels), the 28 x 28 picture
 * centred and zero-padded (pixel 0) to size >= 28, then (pixel / 255 - mean) / std. */
void fmnist_image(const fmnist_split *s, int i, int size, float *out);

#endif
