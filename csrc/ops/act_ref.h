/* act_ref.h - scalar activations shared by the reference kernels. */
#ifndef MV_ACT_REF_H
#define MV_ACT_REF_H
#include <math.h>
#include "../mv_common.h"

/* SiLU as x / (1 + exp(-x)): for x -> -inf exp overflows to inf and the
 * result is -0, as in PyTorch; no NaN for finite x. */
static inline float mv_silu_scalar(float x) { return x / (1.0f + expf(-x)); }

static inline float mv_act_scalar(float x, int act) {
    switch (act) {
    case MV_ACT_SILU: return mv_silu_scalar(x);
    case MV_ACT_RELU: return x > 0.0f ? x : (x != x ? x : 0.0f);
    default: return x;
    }
}
#endif
