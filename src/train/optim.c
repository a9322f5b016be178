/*
 * optim.c - optimizers and learning-rate schedules.
 *
 * SGD is Paddle's Momentum with an L2Decay regularizer (the PP-YOLOE recipe):
 *   g' = g + wd * p;  v = mu * v + g';  p -= lr * v
 * (identical to torch.optim.SGD(momentum=mu, weight_decay=wd) from zero state).
 * AdamW decouples the decay, as Paddle's AdamW and torch.optim.AdamW do:
 *   p *= 1 - lr * wd;  m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;
 *   p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)       (t = step + 1)
 * Schedules map a 0-based step to a learning rate:
 *   warm-up + cosine (PaddleDetection's LinearWarmup + CosineDecay):
 *     t < W: lr * (f + (1 - f) t / W);  else min + (lr - min) (1 + cos(pi t / T)) / 2
 *   one-cycle (torch.optim.lr_scheduler.OneCycleLR, anneal 'cos', two phases):
 *     start lr/div, peak lr at step pct*T - 1, end start/final_div at step T - 1.
 */
#include <math.h>

#include "train/train.h"

#define TRAIN_PI 3.14159265358979323846

int train_param_decays(param_role role)
{
    return role != PARAM_BN_WEIGHT && role != PARAM_BN_BIAS && role != PARAM_BN_MEAN &&
           role != PARAM_BN_VARIANCE;
}

static double cos_anneal(double start, double end, double pct)
{
    return end + (start - end) / 2.0 * (1.0 + cos(TRAIN_PI * pct));
}

double train_schedule_lr(const cspresnet_train_options *opt, long step)
{
    const double lr = opt->lr;
    switch (opt->schedule) {
    case CSPRESNET_SCHED_WARMUP_COSINE: {
        if (step < opt->warmup_steps) {
            double f = opt->warmup_start_factor;
            return lr * (f + (1.0 - f) * (double)step / (double)opt->warmup_steps);
        }
        double T = opt->total_steps > 0 ? (double)opt->total_steps : 1.0;
        double t = (double)step < T ? (double)step : T;
        return opt->min_lr + (lr - opt->min_lr) * 0.5 * (1.0 + cos(TRAIN_PI * t / T));
    }
    case CSPRESNET_SCHED_ONE_CYCLE: {
        double initial = lr / opt->div_factor, final = initial / opt->final_div_factor;
        double p1 = (double)opt->pct_start * (double)opt->total_steps - 1.0;
        double p2 = (double)opt->total_steps - 1.0;
        double t = (double)step;
        if (t <= p1)
            return cos_anneal(initial, lr, p1 > 0 ? t / p1 : 1.0);
        double pct = (t - p1) / (p2 - p1);
        return cos_anneal(lr, final, pct > 1.0 ? 1.0 : pct);
    }
    case CSPRESNET_SCHED_CONSTANT:
        break;
    }
    return lr;
}

/* restrict: the four arrays never overlap; with gcc's default -O2 cost model the loops
 * still ran scalar (~4% of a step at 32x32 input), so this function asks gcc for its
 * dynamic cost model (clang vectorises at -O2 already). */
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic")))
#endif
void train_optim_update(const cspresnet_train_options *opt, long step, float lr, float wd,
                        float *restrict p, const float *restrict g, float *restrict m,
                        float *restrict v, long n)
{
    if (opt->optimizer == CSPRESNET_OPT_ADAMW) {
        const float b1 = opt->beta1, b2 = opt->beta2;
        const double t = (double)step + 1.0;
        const float bc1 = (float)(1.0 - pow(b1, t));
        const float bc2_sqrt = (float)sqrt(1.0 - pow(b2, t));
        const float step_size = lr / bc1;
        const float keep = 1.0f - lr * wd;
        for (long i = 0; i < n; i++) {
            p[i] *= keep;
            m[i] = b1 * m[i] + (1.0f - b1) * g[i];
            v[i] = b2 * v[i] + (1.0f - b2) * g[i] * g[i];
            p[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + opt->eps);
        }
        return;
    }
    const float mu = opt->momentum;
    for (long i = 0; i < n; i++) {
        float gi = g[i] + wd * p[i];
        m[i] = mu * m[i] + gi;
        p[i] -= lr * m[i];
    }
}
