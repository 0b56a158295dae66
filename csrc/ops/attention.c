/* attention.c - multi-head self-attention over patch-grouped pixels: the
 * scalar reference.  See ops.h for the contract. */
#include <math.h>
#include "ops.h"
#include "act_ref.h"

size_t mv_attention_scratch_floats(int N, int hd) {
    /* ref: one score row.  SIMD kernels: the sequence's row table (N
     * ptrdiff_t), Q^T and O^T [hd][32], scores^T [N][32] (32 = the widest
     * query block). */
    return MV_ROUND_UP((size_t)2 * N, 16) + (size_t)2 * hd * 32 + (size_t)N * 32 + 64;
}

/* Row of token n of sequence (b, py, px) in the [B*H*W, ld] pixel matrix. */
static inline ptrdiff_t token_row(const mv_attention_args *a, int b, int py,
                                  int px, int n) {
    int nW = a->W / a->pw;
    int nh = n / nW, nw = n % nW;
    return ((ptrdiff_t)b * a->H + nh * a->ph + py) * a->W + nw * a->pw + px;
}

/* Reference: per query row, scores q.k in j order, softmax with max
 * subtraction, p_j = e_j / sum, out = sum_j p_j v_j in j order.  Split over
 * (sequence, head, query). */
void mv_attention_nhwc_f32__ref(const mv_attention_args *a, int tid, int nth) {
    int P = a->ph * a->pw, N = (a->H / a->ph) * (a->W / a->pw);
    int hd = a->D / a->heads;
    float *s = a->scratch;                 /* this worker's scratch */
    ptrdiff_t t0, t1;
    mv_partition((ptrdiff_t)a->B * P * a->heads * N, tid, nth, &t0, &t1);
    for (ptrdiff_t t = t0; t < t1; t++) {
        int i = (int)(t % N);
        int h = (int)((t / N) % a->heads);
        int seq = (int)(t / ((ptrdiff_t)N * a->heads));
        int b = seq / P, p = seq % P, py = p / a->pw, px = p % a->pw;
        const float *q = a->QKV + token_row(a, b, py, px, i) * a->ldqkv + h * hd;
        float mx = -INFINITY;
        for (int j = 0; j < N; j++) {
            const float *k = a->QKV + token_row(a, b, py, px, j) * a->ldqkv + a->D + h * hd;
            float acc = 0.0f;
            for (int c = 0; c < hd; c++) acc += (q[c] * a->scale) * k[c];
            s[j] = acc;
            if (acc > mx) mx = acc;
        }
        float sum = 0.0f;
        for (int j = 0; j < N; j++) { s[j] = expf(s[j] - mx); sum += s[j]; }
        for (int j = 0; j < N; j++) s[j] /= sum;
        float *o = a->O + token_row(a, b, py, px, i) * a->ldo + h * hd;
        for (int c = 0; c < hd; c++) {
            float acc = 0.0f;
            for (int j = 0; j < N; j++)
                acc += s[j] * a->QKV[token_row(a, b, py, px, j) * a->ldqkv + 2 * a->D + h * hd + c];
            o[c] = acc;
        }
    }
}

/* ---- MobileViTv2 separable attention ---------------------------------------*/
size_t mv_sep_attention_scratch_floats(int N, int D) {
    return (size_t)MV_ROUND_UP(N, 16) + (size_t)MV_ROUND_UP(D, 16) + 32;
}

/* Reference: per sequence, softmax of the N query scalars (max-subtracted,
 * sum in n order), context c[k] = sum_n s_n k_n[k] in n order, then
 * out = relu(v) * c (torch.relu: NaN stays NaN).  Split over sequences. */
void mv_sep_attention_nhwc_f32__ref(const mv_sep_attention_args *a, int tid, int nth) {
    int P = a->ph * a->pw, nW = a->W / a->pw, N = (a->H / a->ph) * nW, D = a->D;
    float *s = a->scratch;                 /* this worker's scratch */
    float *c = s + MV_ROUND_UP(N, 16);
    ptrdiff_t q0, q1;
    mv_partition((ptrdiff_t)a->B * P, tid, nth, &q0, &q1);
    for (ptrdiff_t seq = q0; seq < q1; seq++) {
        int b = (int)(seq / P), p = (int)(seq % P), py = p / a->pw, px = p % a->pw;
#define SEP_ROW(n) (((ptrdiff_t)b * a->H + ((n) / nW) * a->ph + py) * a->W + ((n) % nW) * a->pw + px)
        float mx = -INFINITY, sum = 0.0f;
        for (int n = 0; n < N; n++) {
            s[n] = a->QKV[SEP_ROW(n) * a->ldqkv];
            if (s[n] > mx) mx = s[n];
        }
        for (int n = 0; n < N; n++) { s[n] = expf(s[n] - mx); sum += s[n]; }
        for (int n = 0; n < N; n++) s[n] /= sum;
        for (int k = 0; k < D; k++) c[k] = 0.0f;
        for (int n = 0; n < N; n++) {
            const float *key = a->QKV + SEP_ROW(n) * a->ldqkv + 1;
            for (int k = 0; k < D; k++) c[k] += key[k] * s[n];
        }
        for (int n = 0; n < N; n++) {
            const float *v = a->QKV + SEP_ROW(n) * a->ldqkv + 1 + D;
            float *o = a->O + SEP_ROW(n) * a->ldo;
            for (int k = 0; k < D; k++) o[k] = mv_relu_scalar(v[k]) * c[k];
        }
#undef SEP_ROW
    }
}
