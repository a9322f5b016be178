/*
 * preprocess.h - internal header of the image pre-processing part of the library
 * (resize_cubic.c, letterbox.c, normalize.c). The functions themselves are public:
 * see the "Images" section of include/cspresnet.h. No decoding happens here: the
 * caller hands 8-bit RGB pixels (the CLI decodes JPEG/PNG in cli/image_*.c).
 */
#ifndef CSPRESNET_PREPROCESS_H
#define CSPRESNET_PREPROCESS_H

#include "cspresnet.h"

#endif
