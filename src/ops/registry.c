/*
 * registry.c - every op the graph can hold. Adding an op: its file in src/ops
 * exporting one op_desc, its declaration in graph/graph.h and one line here.
 */
#include <string.h>

#include "graph/graph.h"

static const op_desc *const registry[] = {
    &op_conv2d, &op_batchnorm, &op_activation, &op_add, &op_ese, &op_concat,
    &op_upsample2x, &op_maxpool, &op_ese_attn, &op_det_boxes, &op_det_scores,
};

int op_count(void) { return (int)(sizeof registry / sizeof registry[0]); }

const op_desc *op_at(int i) { return i >= 0 && i < op_count() ? registry[i] : NULL; }

const op_desc *op_find(const char *name)
{
    for (int i = 0; i < op_count(); i++)
        if (strcmp(registry[i]->name, name) == 0)
            return registry[i];
    return NULL;
}
