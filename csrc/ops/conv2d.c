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

/* ---- Winograd F(2x2, 3x3) ---------------------------------------------------*/
int mv_conv3x3_wino_shape_ok(int kh, int kw, int stride, int pad, int dil, int has_res) {
    return kh == 3 && kw == 3 && stride == 1 && pad == 1 && dil == 1 && !has_res;
}

int mv_conv3x3_wino_pays(int Cin, int Cout) {
    return Cin >= MV_WINO_MIN_CHANNELS && Cout >= MV_WINO_MIN_CHANNELS;
}

size_t mv_conv3x3_wino_packed_floats(int Cin, int Cout) {
    return 16 * mv_gemm_packed_floats(Cin, Cout);
}

/* U[xi] = (G g G^T)[xi / 4][xi % 4], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1]. */
void mv_pack_conv3x3_wino_weights(const float *W, int Cout, int Cin, float *tmp, float *Up) {
    static const double G[4][3] = {{1, 0, 0}, {.5, .5, .5}, {.5, -.5, .5}, {0, 0, 1}};
    size_t psz = mv_gemm_packed_floats(Cin, Cout);
    for (int xi = 0; xi < 16; xi++) {
        int r = xi / 4, c = xi % 4;
        for (int co = 0; co < Cout; co++)
            for (int ci = 0; ci < Cin; ci++) {
                const float *g = W + ((size_t)co * Cin + ci) * 9;
                double u = 0.0;
                for (int i = 0; i < 3; i++)
                    for (int j = 0; j < 3; j++) u += G[r][i] * g[i * 3 + j] * G[c][j];
                tmp[(size_t)co * Cin + ci] = (float)u;
            }
        mv_pack_gemm_weights(tmp, Cout, Cin, Up + (size_t)xi * psz);
    }
}

/* Tile rows per block: about 64 tiles per GEMM, and at least nth blocks per
 * image when the map allows, so small maps still split across workers. */
int mv_conv3x3_wino_block_rows(int H, int W, int nth) {
    int TH = (H + 1) / 2, TW = (W + 1) / 2;
    int nrb = (TH * TW + 63) / 64;
    if (nrb < nth) nrb = MV_MIN(nth, TH);
    if (nrb < 1) nrb = 1;
    return (TH + nrb - 1) / nrb;
}

size_t mv_conv3x3_wino_scratch_floats(int H, int W, int Cin, int Cout, int nth) {
    size_t mb = (size_t)mv_conv3x3_wino_block_rows(H, W, nth) * ((W + 1) / 2);
    return MV_ROUND_UP(16 * mb * Cin, 16) + MV_ROUND_UP(16 * mb * Cout, 16);
}

/* Reference: the same blocks, transforms in scalar code, GEMMs by the
 * reference GEMM. */
void mv_conv3x3_wino_nhwc_f32__ref(const mv_conv2d_args *a, int tid, int nth) {
    const int H = a->H, W = a->W, C1 = a->C1, Cin = C1 + a->C2, Cout = a->Cout;
    const int TH = (H + 1) / 2, TW = (W + 1) / 2, R = mv_conv3x3_wino_block_rows(H, W, nth);
    const int MB = R * TW, nrb = (TH + R - 1) / R;
    float *V = a->scratch, *M = V + MV_ROUND_UP(16 * (size_t)MB * Cin, 16);
    size_t psz = mv_gemm_packed_floats(Cin, Cout);
    ptrdiff_t u0, u1;
    mv_partition((ptrdiff_t)a->B * nrb, tid, nth, &u0, &u1);
    for (ptrdiff_t u = u0; u < u1; u++) {
        int b = (int)(u / nrb), ty0 = (int)(u % nrb) * R, nt = MV_MIN(R, TH - ty0) * TW;
        for (int t = 0; t < nt; t++) {
            int iy0 = 2 * (ty0 + t / TW) - 1, ix0 = 2 * (t % TW) - 1;
            for (int ci = 0; ci < Cin; ci++) {
                float d[4][4], m[4][4];
                for (int i = 0; i < 4; i++)
                    for (int j = 0; j < 4; j++) {
                        int iy = iy0 + i, ix = ix0 + j;
                        ptrdiff_t px = ((ptrdiff_t)b * H + iy) * W + ix;
                        d[i][j] = (iy < 0 || iy >= H || ix < 0 || ix >= W) ? 0.0f
                                  : ci < C1 ? a->X1[px * a->ldx1 + ci] : a->X2[px * a->ldx2 + ci - C1];
                    }
                for (int j = 0; j < 4; j++) {         /* B^T d */
                    m[0][j] = d[0][j] - d[2][j];
                    m[1][j] = d[1][j] + d[2][j];
                    m[2][j] = d[2][j] - d[1][j];
                    m[3][j] = d[1][j] - d[3][j];
                }
                for (int i = 0; i < 4; i++) {         /* (B^T d) B */
                    float *v = V + ((size_t)(i * 4) * MB + t) * Cin + ci;
                    v[0] = m[i][0] - m[i][2];
                    v[(size_t)MB * Cin] = m[i][1] + m[i][2];
                    v[(size_t)2 * MB * Cin] = m[i][2] - m[i][1];
                    v[(size_t)3 * MB * Cin] = m[i][1] - m[i][3];
                }
            }
        }
        for (int xi = 0; xi < 16; xi++) {
            mv_gemm_args g = {.M = nt, .N = Cout, .K = Cin, .A = V + (size_t)xi * MB * Cin, .lda = Cin,
                              .Wp = a->Wp + (size_t)xi * psz, .C = M + (size_t)xi * MB * Cout, .ldc = Cout,
                              .act = MV_ACT_NONE};
            mv_gemm_nhwc_f32__ref(&g, 0, 1);
        }
        for (int t = 0; t < nt; t++) {
            int oy0 = 2 * (ty0 + t / TW), ox0 = 2 * (t % TW);
            for (int co = 0; co < Cout; co++) {
                float m[16], s[2][4];
                for (int xi = 0; xi < 16; xi++) m[xi] = M[((size_t)xi * MB + t) * Cout + co];
                for (int j = 0; j < 4; j++) {         /* A^T m */
                    s[0][j] = m[j] + m[4 + j] + m[8 + j];
                    s[1][j] = m[4 + j] - m[8 + j] - m[12 + j];
                }
                for (int i = 0; i < 2; i++) {         /* (A^T m) A */
                    float y[2] = {s[i][0] + s[i][1] + s[i][2], s[i][1] - s[i][2] - s[i][3]};
                    for (int j = 0; j < 2; j++) {
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
