/*
 * weights_external.c - a model whose weight arena lives in memory it does not own.
 *
 * The safetensors loader maps a file read-only and, when every tensor is float-aligned
 * in the mapping, points the model's weights at it instead of copying (zero-copy).
 * The model stays immutable: nothing writes to a loaded model's weights (deploy builds
 * a new model), and the mapping is PROT_READ so a stray write would fault rather than
 * change the weights silently. cspresnet_model_free hands the memory back through the
 * release callback.
 */
#include <stdlib.h>

#include "model/model.h"

void model_adopt_weights(cspresnet_model *m, const float *weights, long floats,
                         void (*release)(void *owner), void *owner)
{
    if (m->weights_release)
        m->weights_release(m->weights_owner);
    else
        free(m->weights);
    m->weights = (float *)(uintptr_t)weights; /* read-only by the model's contract */
    m->weight_floats = floats;
    m->weights_release = release;
    m->weights_owner = owner;
}
