/*
 * head.c - the built-in classification head: global average pool over the last
 * stage, a linear layer, softmax cross-entropy averaged over the batch.
 *
 * x (N,C,H,W) -> feat (N,C) -> logits (N,K) = feat . W^T + b, W (K,C), b (K).
 * loss = mean_n (logsumexp(logits_n) - logits_n[label_n]).
 * Backward: dlogits = (softmax - onehot) / N; dW = dlogits^T feat; db = sum_n dlogits;
 * dx[n,c,:,:] = (dlogits_n . W)[c] / (H*W). Small; runs on the calling thread in a
 * fixed order (double accumulators); dl is the caller's N*K doubles of scratch.
 */
#include <math.h>

#include "train/train.h"

void head_forward(const tensor4 *x, const float *w, const float *b, int classes, float *feat,
                  float *logits)
{
    const long plane = (long)x->h * x->w;
    for (int n = 0; n < x->n; n++) {
        for (int c = 0; c < x->c; c++) {
            const float *p = x->data + n * x->batch_stride + c * plane;
            double s = 0.0;
            for (long i = 0; i < plane; i++)
                s += p[i];
            feat[(long)n * x->c + c] = (float)(s / (double)plane);
        }
        for (int k = 0; k < classes; k++) {
            double z = b[k];
            for (int c = 0; c < x->c; c++)
                z += (double)w[(long)k * x->c + c] * feat[(long)n * x->c + c];
            logits[(long)n * classes + k] = (float)z;
        }
    }
}

void head_loss_backward(const tensor4 *x, const float *w, int classes, const float *feat,
                        const float *logits, const int *labels, float *dw, float *db,
                        const tensor4 *dx, int *correct, double *loss_out, double *dl)
{
    const int N = x->n, C = x->c;
    const long plane = (long)x->h * x->w;
    double loss = 0.0;
    int hits = 0;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (long)n * classes;
        int arg = 0;
        double mx = z[0];
        for (int k = 1; k < classes; k++)
            if (z[k] > mx) {
                mx = z[k];
                arg = k;
            }
        hits += arg == labels[n];
        double se = 0.0;
        for (int k = 0; k < classes; k++)
            se += exp(z[k] - mx);
        loss += mx + log(se) - z[labels[n]];
        for (int k = 0; k < classes; k++)
            dl[(long)n * classes + k] = (exp(z[k] - mx) / se - (k == labels[n])) / N;
    }
    for (int k = 0; k < classes; k++) {
        double sb = 0.0;
        for (int n = 0; n < N; n++)
            sb += dl[(long)n * classes + k];
        db[k] = (float)sb;
        for (int c = 0; c < C; c++) {
            double s = 0.0;
            for (int n = 0; n < N; n++)
                s += dl[(long)n * classes + k] * feat[(long)n * C + c];
            dw[(long)k * C + c] = (float)s;
        }
    }
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double s = 0.0;
            for (int k = 0; k < classes; k++)
                s += dl[(long)n * classes + k] * w[(long)k * C + c];
            float v = (float)(s / (double)plane);
            float *d = dx->data + n * dx->batch_stride + c * plane;
            for (long i = 0; i < plane; i++)
                d[i] = v;
        }
    if (correct)
        *correct = hits;
    *loss_out = loss / N;
}
