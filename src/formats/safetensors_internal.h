/*
 * safetensors_internal.h - names and limits shared by the safetensors reader and writer.
 */
#ifndef CSPRESNET_FORMATS_SAFETENSORS_INTERNAL_H
#define CSPRESNET_FORMATS_SAFETENSORS_INTERNAL_H

#include <stdint.h>

#define ST_METADATA_KEY "__metadata__"
#define ST_META_VERSION "format_version"
#define ST_META_PRODUCER "producer"
#define ST_META_CHANNELS "channels"
#define ST_META_LAYERS "layers"
#define ST_META_ACT "act"
#define ST_META_LARGE_STEM "large_stem"
#define ST_META_ALPHA "alpha"
#define ST_META_RETURN_IDX "return_idx"
#define ST_META_DEPLOYED "deployed"
#define ST_META_SOURCE "source"
#define ST_META_DETECTOR "detector"  /* "1": a PP-YOLOE detector (backbone under "backbone.") */

#define ST_DATA_ALIGN 64                 /* bytes: where the writer starts the data */
#define ST_MAX_HEADER (100u * 1000 * 1000) /* the reference implementation's limit */
#define ST_MAX_NDIM 8
/* A stream (pipe, FIFO) is read into memory up to the .pdparams reader's file limit. */
#define ST_MAX_STREAM_BYTES ((uint64_t)16 << 30)

static inline int st_host_is_little_endian(void)
{
    const uint16_t one = 1;
    return *(const unsigned char *)&one == 1;
}

#endif
