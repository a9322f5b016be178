/*
 * summary.c - paddle.summary's table for a CSPResNet config, plus MACs and FLOPs.
 *
 * paddle.summary registers a forward post-hook on every layer except Sequential /
 * LayerList containers and the model itself, so a row appears when a layer's forward
 * finishes: Conv2D and BatchNorm2D before their ConvBNLayer, a block after all of its
 * parts. Each row counts the layer's own parameters (layer._parameters), so the rows
 * add up to the totals. Activations given by name are functions in Paddle, not
 * layers, and have no rows. Row names are "<Class>-<k>", k counting per class.
 *
 * MACs count the multiply-adds of every Conv2D (including the ESE fc); FLOPs = 2 x MACs.
 * The deployed network (deploy.c) has Conv2D rows with weight and bias, no BN rows, and
 * one 3x3 Conv2D per RepVggBlock.
 */
#include <stdio.h>
#include <string.h>

#include "model/model.h"

enum { CLS_CONV, CLS_BN, CLS_CONVBN, CLS_REPVGG, CLS_BASIC, CLS_ESE, CLS_STAGE, CLS_COUNT };
static const char *const class_names[CLS_COUNT] = {
    "Conv2D", "BatchNorm2D", "ConvBNLayer", "RepVggBlock", "BasicBlock", "EffectiveSELayer", "CSPResStage"};

typedef struct shape4 {
    long n, c, h, w;
} shape4;

typedef struct summary {
    FILE *out;
    int counter[CLS_COUNT];
    long long total, trainable;
    double activations;      /* sum of output elements, for paddle's pass size */
    double macs;             /* of the current section */
    int deployed;            /* rows of the fused network */
} summary;

static void row(summary *s, int cls, shape4 in, shape4 out, long long params, long long trainable)
{
    char name[48], ins[64], outs[64], num[32];
    snprintf(name, sizeof name, "%s-%d", class_names[cls], ++s->counter[cls]);
    snprintf(ins, sizeof ins, "[[%ld, %ld, %ld, %ld]]", in.n, in.c, in.h, in.w);
    snprintf(outs, sizeof outs, "[%ld, %ld, %ld, %ld]", out.n, out.c, out.h, out.w);
    /* thousands separators */
    char raw[32];
    snprintf(raw, sizeof raw, "%lld", params);
    size_t len = strlen(raw), j = 0;
    for (size_t i = 0; i < len; i++) {
        num[j++] = raw[i];
        if ((len - i - 1) % 3 == 0 && i + 1 < len)
            num[j++] = ',';
    }
    num[j] = '\0';
    fprintf(s->out, "%17s %26s %22s %13s\n", name, ins, outs, num);
    s->total += params;
    s->trainable += trainable;
    s->activations += (double)out.n * out.c * out.h * out.w;
}

static shape4 conv_bn(summary *s, shape4 in, long cout, int k, int stride)
{
    shape4 out = {in.n, cout, stride == 2 ? (in.h + 1) / 2 : in.h, stride == 2 ? (in.w + 1) / 2 : in.w};
    long long wparams = (long long)cout * in.c * k * k;
    if (s->deployed) {
        row(s, CLS_CONV, in, out, wparams + cout, wparams + cout);
    } else {
        row(s, CLS_CONV, in, out, wparams, wparams);
        row(s, CLS_BN, out, out, 4LL * cout, 2LL * cout);
    }
    row(s, CLS_CONVBN, in, out, 0, 0);
    s->macs += (double)wparams * out.h * out.w * out.n;
    return out;
}

/* Deployed RepVggBlock: one 3x3 Conv2D with bias (upstream deletes conv1 / conv2). */
static void repvgg_deployed(summary *s, shape4 y)
{
    long long wparams = (long long)y.c * y.c * 9;
    row(s, CLS_CONV, y, y, wparams + y.c, wparams + y.c);
    s->macs += (double)wparams * y.h * y.w * y.n;
    row(s, CLS_REPVGG, y, y, 0, 0);
}

static shape4 stage(summary *s, const cspresnet_config *cfg, int i, shape4 in)
{
    long mid = model_stage_mid(cfg, i), half = mid / 2;
    shape4 x = conv_bn(s, in, mid, 3, 2);
    conv_bn(s, x, half, 1, 1);
    shape4 z = conv_bn(s, x, half, 1, 1);
    for (int j = 0; j < cfg->layers[i]; j++) {
        shape4 y = conv_bn(s, z, half, 3, 1);
        if (s->deployed) {
            repvgg_deployed(s, y);
        } else {
            conv_bn(s, y, half, 3, 1);
            conv_bn(s, y, half, 1, 1);
            row(s, CLS_REPVGG, y, y, cfg->use_alpha ? 1 : 0, cfg->use_alpha ? 1 : 0);
        }
        row(s, CLS_BASIC, z, y, 0, 0);
    }
    shape4 cat = {x.n, mid, x.h, x.w};
    shape4 pooled = {x.n, mid, 1, 1};
    row(s, CLS_CONV, pooled, pooled, (long long)mid * mid + mid, (long long)mid * mid + mid);
    s->macs += (double)mid * mid * x.n;
    row(s, CLS_ESE, cat, cat, 0, 0);
    shape4 out = conv_bn(s, cat, cfg->channels[i + 1], 1, 1);
    row(s, CLS_STAGE, in, out, 0, 0);
    return out;
}

static void print_count(FILE *out, const char *label, long long v)
{
    char raw[32], num[48];
    snprintf(raw, sizeof raw, "%lld", v);
    size_t len = strlen(raw), j = 0;
    for (size_t i = 0; i < len; i++) {
        num[j++] = raw[i];
        if ((len - i - 1) % 3 == 0 && i + 1 < len)
            num[j++] = ',';
    }
    num[j] = '\0';
    fprintf(out, "%s: %s\n", label, num);
}

cspresnet_status cspresnet_summary_print(const cspresnet_config *cfg, int deployed, int n,
                                         int h, int w, FILE *out, char *err, size_t err_size)
{
    cspresnet_status st = cspresnet_config_validate(cfg, err, err_size);
    if (st != CSPRESNET_OK)
        return st;
    if (!out || n < 1 || h < 1 || w < 1) {
        error_buf e;
        error_set(&e, CSPRESNET_ERR_ARGUMENT, "summary: input %dx3x%dx%d must have n, h, w >= 1", n, h, w);
        error_copy_out(&e, err, err_size);
        return CSPRESNET_ERR_ARGUMENT;
    }
    summary s = {.out = out, .deployed = deployed != 0};
    double section_macs[CSPRESNET_NUM_STAGES + 1];
    const char *rule = "------------------------------------------------------------------------------";
    const char *dbl = "==============================================================================";
    fprintf(out, "%s\n%17s %26s %22s %13s\n%s\n", rule, "Layer (type)", "Input Shape", "Output Shape",
            "Param #", dbl);
    shape4 x = {n, 3, h, w};
    int ch = model_stem_mid(cfg);
    x = conv_bn(&s, x, ch, 3, 2);
    if (cfg->use_large_stem)
        x = conv_bn(&s, x, ch, 3, 1);
    x = conv_bn(&s, x, cfg->channels[0], 3, 1);
    section_macs[0] = s.macs;
    for (int i = 0; i < CSPRESNET_NUM_STAGES; i++) {
        s.macs = 0;
        x = stage(&s, cfg, i, x);
        section_macs[i + 1] = s.macs;
    }
    fprintf(out, "%s\n", dbl);
    print_count(out, "Total params", s.total);
    print_count(out, "Trainable params", s.trainable);
    print_count(out, "Non-trainable params", s.total - s.trainable);
    const double mb = 1024.0 * 1024.0;
    double input_mb = (double)n * 3 * h * w * 4.0 / mb;
    double pass_mb = 2.0 * s.activations * 4.0 / mb;
    double params_mb = (double)s.total * 4.0 / mb;
    fprintf(out, "%s\n", rule);
    fprintf(out, "Input size (MB): %.2f\n", input_mb);
    fprintf(out, "Forward/backward pass size (MB): %.2f\n", pass_mb);
    fprintf(out, "Params size (MB): %.2f\n", params_mb);
    fprintf(out, "Estimated Total Size (MB): %.2f\n", input_mb + pass_mb + params_mb);
    fprintf(out, "%s\n", rule);
    fprintf(out, "Compute for input [%d, 3, %d, %d]%s (conv multiply-adds; FLOPs = 2 x MACs):\n", n, h, w,
            deployed ? ", deployed" : "");
    double total = 0;
    for (int i = 0; i <= CSPRESNET_NUM_STAGES; i++) {
        char label[32];
        if (i == 0)
            snprintf(label, sizeof label, "stem");
        else
            snprintf(label, sizeof label, "stage %d (stride %d)", i - 1, 4 << (i - 1));
        fprintf(out, "  %-20s MACs: %9.3f G   FLOPs: %9.3f G\n", label, section_macs[i] / 1e9,
                2.0 * section_macs[i] / 1e9);
        total += section_macs[i];
    }
    fprintf(out, "Total MACs: %.3f G\n", total / 1e9);
    fprintf(out, "Total FLOPs: %.3f G\n", 2.0 * total / 1e9);
    fprintf(out, "%s\n", rule);
    return CSPRESNET_OK;
}
