/* eltwise.c - activations, add, concat, layout changes, unfold/fold, global
 * average pooling (reference kernels). */
#include <string.h>
#include "ops.h"
#include "act_ref.h"

void mv_act_f32__ref(const float *X, ptrdiff_t n, int act, float *Y, int tid,
                     int nth) {
    ptrdiff_t i0, i1;
    mv_partition(n, tid, nth, &i0, &i1);
    for (ptrdiff_t i = i0; i < i1; i++) Y[i] = mv_act_scalar(X[i], act);
}

void mv_add_f32__ref(const float *A, const float *B, ptrdiff_t n, float *Y,
                     int tid, int nth) {
    ptrdiff_t i0, i1;
    mv_partition(n, tid, nth, &i0, &i1);
    for (ptrdiff_t i = i0; i < i1; i++) Y[i] = A[i] + B[i];
}

void mv_concat_nhwc_f32__ref(const float *X1, int C1, const float *X2, int C2,
                             ptrdiff_t M, float *Y, int tid, int nth) {
    ptrdiff_t m0, m1;
    mv_partition(M, tid, nth, &m0, &m1);
    for (ptrdiff_t m = m0; m < m1; m++) {
        memcpy(Y + m * (C1 + C2), X1 + m * C1, sizeof(float) * C1);
        memcpy(Y + m * (C1 + C2) + C1, X2 + m * C2, sizeof(float) * C2);
    }
}

/* Split over (b, y) rows. */
void mv_nchw_to_nhwc_f32__ref(const float *X, int B, int C, int H, int W,
                              float *Y, int tid, int nth) {
    ptrdiff_t r0, r1;
    mv_partition((ptrdiff_t)B * H, tid, nth, &r0, &r1);
    for (ptrdiff_t r = r0; r < r1; r++) {
        ptrdiff_t b = r / H, y = r % H;
        for (int x = 0; x < W; x++)
            for (int c = 0; c < C; c++)
                Y[(r * W + x) * C + c] = X[((b * C + c) * H + y) * W + x];
    }
}

/* Split over (b, c) planes. */
void mv_nhwc_to_nchw_f32__ref(const float *X, int B, int C, int H, int W,
                              ptrdiff_t ldx, float *Y, int tid, int nth) {
    ptrdiff_t p0, p1;
    mv_partition((ptrdiff_t)B * C, tid, nth, &p0, &p1);
    for (ptrdiff_t p = p0; p < p1; p++) {
        ptrdiff_t b = p / C, c = p % C;
        const float *x = X + b * (ptrdiff_t)H * W * ldx + c;
        float *y = Y + p * (ptrdiff_t)H * W;
        for (ptrdiff_t i = 0; i < (ptrdiff_t)H * W; i++) y[i] = x[i * ldx];
    }
}

/* Split over input rows (b, y). */
void mv_unfold_nhwc_f32__ref(const float *X, int B, int H, int W, int C,
                             int ph, int pw, float *T, int tid, int nth) {
    int nW = W / pw, N = (H / ph) * nW, P = ph * pw;
    ptrdiff_t r0, r1;
    mv_partition((ptrdiff_t)B * H, tid, nth, &r0, &r1);
    for (ptrdiff_t r = r0; r < r1; r++) {
        int b = (int)(r / H), y = (int)(r % H);
        for (int x = 0; x < W; x++) {
            int seq = b * P + (y % ph) * pw + x % pw, n = (y / ph) * nW + x / pw;
            memcpy(T + ((ptrdiff_t)seq * N + n) * C, X + (r * W + x) * C,
                   sizeof(float) * C);
        }
    }
}

void mv_fold_nhwc_f32__ref(const float *T, int B, int H, int W, int C, int ph,
                           int pw, float *X, int tid, int nth) {
    int nW = W / pw, N = (H / ph) * nW, P = ph * pw;
    ptrdiff_t r0, r1;
    mv_partition((ptrdiff_t)B * H, tid, nth, &r0, &r1);
    for (ptrdiff_t r = r0; r < r1; r++) {
        int b = (int)(r / H), y = (int)(r % H);
        for (int x = 0; x < W; x++) {
            int seq = b * P + (y % ph) * pw + x % pw, n = (y / ph) * nW + x / pw;
            memcpy(X + (r * W + x) * C, T + ((ptrdiff_t)seq * N + n) * C,
                   sizeof(float) * C);
        }
    }
}

/* Sum in pixel order (fixed), then divide.  Split over (b, c). */
void mv_global_avg_pool_nhwc_f32__ref(const float *X, int B, ptrdiff_t HW, int C,
                          ptrdiff_t ldx, float *Y, int tid, int nth) {
    ptrdiff_t p0, p1;
    mv_partition((ptrdiff_t)B * C, tid, nth, &p0, &p1);
    for (ptrdiff_t p = p0; p < p1; p++) {
        ptrdiff_t b = p / C, c = p % C;
        const float *x = X + b * HW * ldx + c;
        float acc = 0.0f;
        for (ptrdiff_t i = 0; i < HW; i++) acc += x[i * ldx];
        Y[p] = acc / (float)HW;
    }
}
