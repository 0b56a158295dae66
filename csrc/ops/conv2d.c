/* conv2d.c - dense KxK convolution, NHWC, implicit GEMM: packing and the
 * scalar reference.  See ops.h for the contract. */
#include "ops.h"
#include "act_ref.h"
#include <math.h>

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

/* ---- Winograd F(2x2, 3x3) ---------------------------------------------------*/
int mv_conv3x3_wino_shape_ok(int kh, int kw, int stride, int pad, int dil, int has_res) {
    return kh == 3 && kw == 3 && stride == 1 && pad == 1 && dil == 1 && !has_res;
}

int mv_conv3x3_wino_pays(int Cin, int Cout) {
    return Cin >= MV_WINO_MIN_CHANNELS && Cout >= MV_WINO_MIN_CHANNELS;
}

/* F(4x4, 3x3) from 8 x 8 maps up (measured on MobileViT-S, 1 thread: its
 * 32x32, 16x16 and 8x8 stage convs each ran 10-30 % faster than by F(2x2),
 * AVX2 and AVX-512 alike); smaller maps keep F(2x2), whose tiles waste less
 * at the edges. */
int mv_conv3x3_wino_tile(int H, int W) {
    return H >= 8 && W >= 8 ? 4 : 2;
}

size_t mv_conv3x3_wino_packed_floats(int m, int Cin, int Cout) {
    return (size_t)(m + 2) * (m + 2) * mv_gemm_packed_floats(Cin, Cout);
}

/* U[xi] = (G g G^T)[xi / T][xi % T], in double.  F(2x2): G = [1 0 0;
 * .5 .5 .5; .5 -.5 .5; 0 0 1]; F(4x4): the rows below (points 0, -1, 1,
 * 2, -2 and infinity). */
void mv_pack_conv3x3_wino_weights(int m, const float *W, int Cout, int Cin, float *tmp, float *Up) {
    static const double G2[4][3] = {{1, 0, 0}, {.5, .5, .5}, {.5, -.5, .5}, {0, 0, 1}};
    static const double G4[6][3] = {{1. / 4, 0, 0},           {-1. / 6, -1. / 6, -1. / 6},
                                    {-1. / 6, 1. / 6, -1. / 6}, {1. / 24, 1. / 12, 1. / 6},
                                    {1. / 24, -1. / 12, 1. / 6}, {0, 0, 1}};
    const int T = m + 2;
    size_t psz = mv_gemm_packed_floats(Cin, Cout);
    for (int xi = 0; xi < T * T; xi++) {
        int r = xi / T, c = xi % T;
        const double *gr = m == 4 ? G4[r] : G2[r], *gc = m == 4 ? G4[c] : G2[c];
        for (int co = 0; co < Cout; co++)
            for (int ci = 0; ci < Cin; ci++) {
                const float *g = W + ((size_t)co * Cin + ci) * 9;
                double u = 0.0;
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++) u += gr[i] * g[i * 3 + j] * gc[j];
                tmp[(size_t)co * Cin + ci] = (float)u;
            }
        mv_pack_gemm_weights(tmp, Cout, Cin, Up + (size_t)xi * psz);
    }
}

/* Tile rows per block: about 64 tiles (F(2x2)) or 32 (F(4x4): 36 positions
 * instead of 16 keep V and M about the same size) per GEMM, and at least nth
 * blocks per image when that leaves >= 4 tiles in each, so small maps
 * split across workers by tiles; only what is left is split by
 * output-channel slices, each of which recomputes its block's input
 * transform (2 threads, AVX2, the 16x16 F(4x4) convs of MobileViT-XS with
 * 8-tile blocks instead of two slices of one 16-tile block: 0.13 -> 0.08
 * and 0.22 -> 0.18 ms; XS 2T -1.5 %, S unchanged). */
int mv_conv3x3_wino_block_rows(int m, int H, int W, int nth) {
    int TH = (H + m - 1) / m, TW = (W + m - 1) / m, target = m == 4 ? 32 : 64;
    int nrb = (TH * TW + target - 1) / target;
    if (nrb < nth) nrb = MV_MAX(nrb, MV_MIN(MV_MIN(nth, TH), TH * TW / 4));
    if (nrb < 1) nrb = 1;
    return (TH + nrb - 1) / nrb;
}

int mv_conv3x3_wino_slices(int m, int B, int H, int W, int Cout, int nth) {
    int TH = (H + m - 1) / m, R = mv_conv3x3_wino_block_rows(m, H, W, nth);
    ptrdiff_t units = (ptrdiff_t)B * ((TH + R - 1) / R);
    if (units >= nth) return 1;
    int panels = (Cout + MV_NR - 1) / MV_NR;
    return (int)MV_MAX(1, MV_MIN((ptrdiff_t)panels, (nth + units - 1) / units));
}

size_t mv_conv3x3_wino_scratch_floats(int m, int H, int W, int Cin, int Cout, int nth) {
    const int T = m + 2;
    size_t mb = (size_t)mv_conv3x3_wino_block_rows(m, H, W, nth) * ((W + m - 1) / m);
    return MV_ROUND_UP((size_t)T * T * mb * Cin, 16) + MV_ROUND_UP((size_t)T * T * mb * Cout, 16);
}

/* B^T d and A^T m of one column of a tile, in the order (and with the fused
 * multiply-adds) the fast kernels use; see wino4_bt / wino4_at in
 * conv2d.simd.inc. */
static void ref_bt(int m, const float *d, float *r) {
    if (m == 2) {
        r[0] = d[0] - d[2]; r[1] = d[1] + d[2]; r[2] = d[2] - d[1]; r[3] = d[1] - d[3];
        return;
    }
    float a = d[3] + d[4], b = d[1] + d[2], c = d[4] - d[3], e = d[1] - d[2];
    float f = d[4] - d[2], h = d[3] - d[1];
    r[0] = fmaf(4.0f, d[0], fmaf(-5.0f, d[2], d[4]));
    r[1] = fmaf(-4.0f, b, a);
    r[2] = fmaf(4.0f, e, c);
    r[3] = fmaf(2.0f, h, f);
    r[4] = fmaf(-2.0f, h, f);
    r[5] = fmaf(4.0f, d[1], fmaf(-5.0f, d[3], d[5]));
}

static void ref_at(int m, const float *x, float *y) {
    if (m == 2) {
        y[0] = x[0] + x[1] + x[2]; y[1] = x[1] - x[2] - x[3];
        return;
    }
    float p = x[1] + x[2], q = x[1] - x[2], u = x[3] + x[4], v = x[3] - x[4];
    y[0] = x[0] + p + u;
    y[1] = fmaf(2.0f, v, q);
    y[2] = fmaf(4.0f, u, p);
    y[3] = fmaf(8.0f, v, q) + x[5];
}

/* Reference: the same blocks, transforms in scalar code, GEMMs by the
 * reference GEMM. */
void mv_conv3x3_wino_nhwc_f32__ref(const mv_conv2d_args *a, int tid, int nth) {
    const int m = a->wtile == 4 ? 4 : 2, T = m + 2, TT = T * T;
    const int H = a->H, W = a->W, C1 = a->C1, Cin = C1 + a->C2, Cout = a->Cout;
    const int TH = (H + m - 1) / m, TW = (W + m - 1) / m, R = mv_conv3x3_wino_block_rows(m, H, W, nth);
    const int MB = R * TW, nrb = (TH + R - 1) / R;
    float *V = a->scratch, *M = V + MV_ROUND_UP((size_t)TT * MB * Cin, 16);
    size_t psz = mv_gemm_packed_floats(Cin, Cout);
    ptrdiff_t u0, u1;
    mv_partition((ptrdiff_t)a->B * nrb, tid, nth, &u0, &u1);
    for (ptrdiff_t u = u0; u < u1; u++) {
        int b = (int)(u / nrb), ty0 = (int)(u % nrb) * R, nt = MV_MIN(R, TH - ty0) * TW;
        for (int t = 0; t < nt; t++) {
            int iy0 = m * (ty0 + t / TW) - 1, ix0 = m * (t % TW) - 1;
            for (int ci = 0; ci < Cin; ci++) {
                float d[6][6], col[6], r[6], mm[6][6];
                for (int i = 0; i < T; i++)
                    for (int j = 0; j < T; j++) {
                        int iy = iy0 + i, ix = ix0 + j;
                        ptrdiff_t px = ((ptrdiff_t)b * H + iy) * W + ix;
                        d[i][j] = (iy < 0 || iy >= H || ix < 0 || ix >= W) ? 0.0f
                                  : ci < C1 ? a->X1[px * a->ldx1 + ci] : a->X2[px * a->ldx2 + ci - C1];
                    }
                for (int j = 0; j < T; j++) {         /* B^T d, column j */
                    for (int i = 0; i < T; i++) col[i] = d[i][j];
                    ref_bt(m, col, r);
                    for (int i = 0; i < T; i++) mm[i][j] = r[i];
                }
                for (int i = 0; i < T; i++) {         /* (B^T d) B, row i */
                    ref_bt(m, mm[i], r);
                    for (int j = 0; j < T; j++) V[((size_t)(i * T + j) * MB + t) * Cin + ci] = r[j];
                }
            }
        }
        for (int xi = 0; xi < TT; xi++) {
            mv_gemm_args g = {.M = nt, .N = Cout, .K = Cin, .A = V + (size_t)xi * MB * Cin, .lda = Cin,
                              .Wp = a->Wp + (size_t)xi * psz, .C = M + (size_t)xi * MB * Cout, .ldc = Cout,
                              .act = MV_ACT_NONE};
            mv_gemm_nhwc_f32__ref(&g, 0, 1);
        }
        for (int t = 0; t < nt; t++) {
            int oy0 = m * (ty0 + t / TW), ox0 = m * (t % TW);
            for (int co = 0; co < Cout; co++) {
                float x[6][6], col[6], s[4][6], y[4];
                for (int xi = 0; xi < TT; xi++) x[xi / T][xi % T] = M[((size_t)xi * MB + t) * Cout + co];
                for (int j = 0; j < T; j++) {         /* A^T m, column j */
                    for (int i = 0; i < T; i++) col[i] = x[i][j];
                    ref_at(m, col, y);
                    for (int i = 0; i < m; i++) s[i][j] = y[i];
                }
                for (int i = 0; i < m; i++) {         /* (A^T m) A, row i */
                    ref_at(m, s[i], y);
                    for (int j = 0; j < m; j++) {
                        int oy = oy0 + i, ox = ox0 + j;
                        if (oy >= H || ox >= W) continue;
                        float v = y[j] + (a->bias ? a->bias[co] : 0.0f);
                        a->Y[(((ptrdiff_t)b * H + oy) * W + ox) * a->ldy + co] = mv_act_scalar(v, a->act);
                    }
                }
            }
        }
    }
}
