/* act_ref.h - scalar activations shared by the reference kernels. */
#ifndef MV_ACT_REF_H
#define MV_ACT_REF_H
#include <math.h>
#include "../mv_common.h"

/* SiLU as x / (1 + exp(-x)), as PyTorch computes it: exp(-x) overflows to
 * inf below about -88.7, so the result is -0 there (torch: -0), NaN at
 * x = -inf (torch: NaN), inf at +inf, NaN at NaN; no NaN for finite x. */
static inline float mv_silu_scalar(float x) { return x / (1.0f + expf(-x)); }

/* torch.relu: 0 for x < 0, x otherwise, so relu(NaN) = NaN and
 * relu(-0) = -0 (the SIMD kernels' max(0, x) gives the same bits). */
static inline float mv_relu_scalar(float x) { return x < 0.0f ? 0.0f : x; }

static inline float mv_act_scalar(float x, int act) {
    switch (act) {
    case MV_ACT_SILU: return mv_silu_scalar(x);
    case MV_ACT_RELU: return mv_relu_scalar(x);
    default: return x;
    }
}
#endif
