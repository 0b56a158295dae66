/* norm.c - LayerNorm, GroupNorm(1) and unfolded BatchNorm (reference
 * kernels; memory-bound, compiled for the baseline ISA). */
#include <math.h>
#include "ops.h"

void mv_layernorm_nhwc_f32__ref(const float *X, ptrdiff_t M, int D,
                                ptrdiff_t ldx, const float *gamma,
                                const float *beta, float eps, float *Y,
                                ptrdiff_t ldy, int tid, int nth) {
    ptrdiff_t m0, m1;
    mv_partition(M, tid, nth, &m0, &m1);
    for (ptrdiff_t m = m0; m < m1; m++) {
        const float *x = X + m * ldx;
        float *y = Y + m * ldy;
        float mean = 0.0f, var = 0.0f;
        for (int c = 0; c < D; c++) mean += x[c];
        mean /= (float)D;
        for (int c = 0; c < D; c++) { float d = x[c] - mean; var += d * d; }
        var /= (float)D;
        float rstd = 1.0f / sqrtf(var + eps);
        for (int c = 0; c < D; c++) y[c] = (x[c] - mean) * rstd * gamma[c] + beta[c];
    }
}

/* Per image: mean and variance over H*W*C in double (the count is large),
 * then per-channel affine. */
void mv_groupnorm1_nhwc_f32__ref(const float *X, int B, ptrdiff_t HW, int C,
                                 const float *gamma, const float *beta,
                                 float eps, float *Y, int tid, int nth) {
    ptrdiff_t b0, b1;
    mv_partition(B, tid, nth, &b0, &b1);
    for (ptrdiff_t b = b0; b < b1; b++) {
        const float *x = X + b * HW * C;
        float *y = Y + b * HW * C;
        ptrdiff_t n = HW * C;
        double mean = 0.0, var = 0.0;
        for (ptrdiff_t i = 0; i < n; i++) mean += x[i];
        mean /= (double)n;
        for (ptrdiff_t i = 0; i < n; i++) { double d = x[i] - mean; var += d * d; }
        var /= (double)n;
        float rstd = (float)(1.0 / sqrt(var + eps)), fm = (float)mean;
        for (ptrdiff_t i = 0; i < HW; i++)
            for (int c = 0; c < C; c++)
                y[i * C + c] = (x[i * C + c] - fm) * rstd * gamma[c] + beta[c];
    }
}

void mv_batchnorm_nhwc_f32__ref(const float *X, ptrdiff_t M, int C,
                                const float *mean, const float *var,
                                const float *gamma, const float *beta,
                                float eps, float *Y, int tid, int nth) {
    ptrdiff_t m0, m1;
    mv_partition(M, tid, nth, &m0, &m1);
    for (ptrdiff_t m = m0; m < m1; m++)
        for (int c = 0; c < C; c++)
            Y[m * C + c] = (X[m * C + c] - mean[c]) / sqrtf(var[c] + eps) * gamma[c] + beta[c];
}
