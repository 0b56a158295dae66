/* gemm.c - weight packing and the scalar reference GEMM (pointwise conv and
 * linear layers).  See ops.h for the contract. */
#include <string.h>
#include <math.h>
#include "ops.h"
#include "act_ref.h"

size_t mv_gemm_packed_floats(int K, int N) {
    return (size_t)((N + MV_NR - 1) / MV_NR) * (size_t)K * MV_NR;
}

/* Panel p holds columns [32p, 32p+32) as Wp[p][k][j] = W[32p + j][k]. */
void mv_pack_gemm_weights(const float *W, int N, int K, float *Wp) {
    int np = (N + MV_NR - 1) / MV_NR;
    for (int p = 0; p < np; p++) {
        float *dst = Wp + (size_t)p * K * MV_NR;
        for (int k = 0; k < K; k++)
            for (int j = 0; j < MV_NR; j++) {
                int n = p * MV_NR + j;
                dst[(size_t)k * MV_NR + j] = n < N ? W[(size_t)n * K + k] : 0.0f;
            }
    }
}

/* Reference: one output element at a time, k ascending, float accumulator.
 * Work split over rows. */
void mv_gemm_nhwc_f32__ref(const mv_gemm_args *a, int tid, int nth) {
    ptrdiff_t m0, m1;
    mv_partition(a->M, tid, nth, &m0, &m1);
    for (ptrdiff_t m = m0; m < m1; m++) {
        const float *x = a->A + m * a->lda;
        for (int n = 0; n < a->N; n++) {
            const float *w = a->Wp + (size_t)(n / MV_NR) * a->K * MV_NR + n % MV_NR;
            float acc = 0.0f;
            for (int k = 0; k < a->K; k++) acc += x[k] * w[(size_t)k * MV_NR];
            if (a->bias) acc += a->bias[n];
            acc = mv_act_scalar(acc, a->act);
            if (a->R) acc += a->R[m * a->ldr + n];
            a->C[m * a->ldc + n] = acc;
        }
    }
}
