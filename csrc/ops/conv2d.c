/* conv2d.c - dense KxK convolution, NHWC, implicit GEMM: packing and the
 * scalar reference.  See ops.h for the contract. */
#include "ops.h"
#include "act_ref.h"

/* In 64-bit: pad and dilation come from users; -1 when the size does not fit
 * an int or the arguments are out of range. */
int mv_conv_out_size(int in, int k, int stride, int pad, int dil) {
    if (in < 0 || k < 1 || stride < 1 || pad < 0 || dil < 1) return -1;
    int64_t span = (int64_t)in + 2 * (int64_t)pad - (int64_t)dil * (k - 1) - 1;
    if (span < 0) return 0;
    int64_t out = span / stride + 1;
    return out > INT32_MAX ? -1 : (int)out;
}

size_t mv_conv2d_packed_floats(int kh, int kw, int Cin, int Cout) {
    return mv_gemm_packed_floats(kh * kw * Cin, Cout);
}

/* Row r = (ky*kw + kx)*Cin + ci of the implicit-GEMM weight matrix. */
void mv_pack_conv2d_weights(const float *W, int Cout, int Cin, int kh, int kw,
                            float *Wp) {
    int K = kh * kw * Cin, np = (Cout + MV_NR - 1) / MV_NR;
    for (int p = 0; p < np; p++) {
        float *dst = Wp + (size_t)p * K * MV_NR;
        for (int t = 0; t < kh * kw; t++)
            for (int ci = 0; ci < Cin; ci++)
                for (int j = 0; j < MV_NR; j++) {
                    int co = p * MV_NR + j;
                    dst[((size_t)t * Cin + ci) * MV_NR + j] =
                        co < Cout ? W[((size_t)co * Cin + ci) * kh * kw + t] : 0.0f;
                }
    }
}

/* Reference: per output pixel and channel, taps in (ky, kx) order, input
 * channels X1 then X2; out-of-range taps are skipped.  Split over output
 * rows (b, oy). */
void mv_conv2d_nhwc_f32__ref(const mv_conv2d_args *a, int tid, int nth) {
    int Cin = a->C1 + a->C2, K = a->kh * a->kw * Cin;
    ptrdiff_t r0, r1;
    mv_partition((ptrdiff_t)a->B * a->OH, tid, nth, &r0, &r1);
    for (ptrdiff_t r = r0; r < r1; r++) {
        int b = (int)(r / a->OH), oy = (int)(r % a->OH);
        for (int ox = 0; ox < a->OW; ox++) {
            ptrdiff_t orow = ((ptrdiff_t)b * a->OH + oy) * a->OW + ox;
            for (int co = 0; co < a->Cout; co++) {
                const float *w = a->Wp + (size_t)(co / MV_NR) * K * MV_NR + co % MV_NR;
                float acc = 0.0f;
                for (int ky = 0; ky < a->kh; ky++) {
                    int iy = oy * a->stride - a->pad + ky * a->dil;
                    if (iy < 0 || iy >= a->H) continue;
                    for (int kx = 0; kx < a->kw; kx++) {
                        int ix = ox * a->stride - a->pad + kx * a->dil;
                        if (ix < 0 || ix >= a->W) continue;
                        ptrdiff_t irow = ((ptrdiff_t)b * a->H + iy) * a->W + ix;
                        const float *wt = w + (size_t)(ky * a->kw + kx) * Cin * MV_NR;
                        const float *x1 = a->X1 + irow * a->ldx1;
                        for (int ci = 0; ci < a->C1; ci++)
                            acc += x1[ci] * wt[(size_t)ci * MV_NR];
                        if (a->C2) {
                            const float *x2 = a->X2 + irow * a->ldx2;
                            wt += (size_t)a->C1 * MV_NR;
                            for (int ci = 0; ci < a->C2; ci++)
                                acc += x2[ci] * wt[(size_t)ci * MV_NR];
                        }
                    }
                }
                if (a->bias) acc += a->bias[co];
                acc = mv_act_scalar(acc, a->act);
                if (a->R) acc += a->R[orow * a->ldr + co];
                a->Y[orow * a->ldy + co] = acc;
            }
        }
    }
}
