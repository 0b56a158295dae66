/* ops.h - every kernel of the C core.
 *
 * Layout: activations are NHWC (channels-last) float32.  A feature map of
 * B images, H x W pixels and C channels is a row-major [B*H*W, ld] matrix
 * whose first C columns are used (ld >= C, usually ld == C), so 1x1
 * convolutions and transformer linears are plain GEMMs over pixels.
 *
 * Threading: kernels never start threads.  Each takes (tid, nth) and
 * computes the static share of its output that belongs to worker tid
 * (mv_partition).  Every output element is produced by one worker with a
 * fixed summation order, so results are bit-identical for any nth.
 *
 * Kernels never allocate, print or exit.  Scratch comes from the caller
 * (see the *_scratch_floats size queries).
 *
 * Naming: mv_<op>_<layout>_<dtype>[__<isa>]; see csrc/README.md. */
#ifndef MV_OPS_H
#define MV_OPS_H

#include "../mv_common.h"

/* ---- GEMM: pointwise conv / linear --------------------------------------
 * C[m, n] = act(sum_k A[m, k] * W[n, k] + bias[n]) + R[m, n]
 * Mirrors torch.nn.functional.linear / conv2d(kernel 1).  W is packed once
 * by mv_pack_gemm_weights into ceil(N/32) panels of [K][32] (zero padded).
 * Parallel over (row block, panel) tiles. */
#define MV_NR 32

typedef struct {
    ptrdiff_t M;
    int N, K;
    const float *A;   ptrdiff_t lda;  /* [M, K] */
    const float *Wp;                  /* packed, mv_gemm_packed_floats(K, N) */
    const float *bias;                /* [N] or NULL */
    const float *R;   ptrdiff_t ldr;  /* [M, N] residual or NULL */
    float *C;         ptrdiff_t ldc;  /* [M, N] */
    int act;                          /* mv_act */
} mv_gemm_args;

size_t mv_gemm_packed_floats(int K, int N);
/* W: [N, K] row-major (PyTorch Linear / Conv 1x1 layout). */
void mv_pack_gemm_weights(const float *W, int N, int K, float *Wp);
void mv_gemm_nhwc_f32__ref(const mv_gemm_args *a, int tid, int nth);
void mv_gemm_nhwc_f32__avx2(const mv_gemm_args *a, int tid, int nth);
void mv_gemm_nhwc_f32__avx512(const mv_gemm_args *a, int tid, int nth);
void mv_gemm_nhwc_f32__neon(const mv_gemm_args *a, int tid, int nth);

/* ---- dense KxK convolution (implicit GEMM) -------------------------------
 * Y[b, oy, ox, co] = act(sum_{ky,kx,ci} X[b, iy, ix, ci] * W[co, ci, ky, kx]
 *                        + bias[co]) + R[b, oy, ox, co]
 * iy = oy*stride - pad + ky*dil (zero outside), likewise ix.  The input
 * channels may come from two tensors (X1: C1 channels, X2: C2 channels),
 * which is torch.cat([X1, X2], dim=1) followed by the conv without building
 * the concatenation.  Mirrors torch.nn.functional.conv2d (groups = 1).
 * W packed by mv_pack_conv2d_weights into panels of [kh*kw*(C1+C2)][32],
 * tap-major then channel.  Parallel over (output row, panel). */
typedef struct {
    int B, H, W;
    int C1; const float *X1; ptrdiff_t ldx1;
    int C2; const float *X2; ptrdiff_t ldx2;   /* C2 == 0: single input */
    int OH, OW, Cout;
    int kh, kw, stride, pad, dil;
    const float *Wp;
    const float *bias;                         /* [Cout] or NULL */
    const float *R; ptrdiff_t ldr;             /* residual or NULL */
    float *Y; ptrdiff_t ldy;
    int act;
    const float *zero;                         /* >= C1 + C2 zeros */
    float *scratch;                            /* Winograd only: the calling worker's own */
    int wtile;                                 /* Winograd only: output tile m, 2 or 4 (0 = 2) */
} mv_conv2d_args;

size_t mv_conv2d_packed_floats(int kh, int kw, int Cin, int Cout);
/* W: [Cout, Cin, kh, kw] (PyTorch layout). */
void mv_pack_conv2d_weights(const float *W, int Cout, int Cin, int kh, int kw,
                            float *Wp);
int mv_conv_out_size(int in, int k, int stride, int pad, int dil);
void mv_conv2d_nhwc_f32__ref(const mv_conv2d_args *a, int tid, int nth);
void mv_conv2d_nhwc_f32__avx2(const mv_conv2d_args *a, int tid, int nth);
void mv_conv2d_nhwc_f32__avx512(const mv_conv2d_args *a, int tid, int nth);
void mv_conv2d_nhwc_f32__neon(const mv_conv2d_args *a, int tid, int nth);

/* ---- 3x3 convolution, stride 1, pad 1, by Winograd F(m x m, 3x3) ---------
 * Same contract as mv_conv2d (kh = kw = 3, stride = dil = pad = 1, OH = H,
 * OW = W, no residual), m = a->wtile = 2 or 4.  Per m x m output tile, with
 * T = m + 2 and the (T x T) input tile d (zero outside the map):
 *   V = B^T d B   per channel,
 *   M[xi] = V[xi] . U[xi]  for the T*T positions xi (T*T GEMMs over a block
 *                          of tiles, K = C1 + C2, N = Cout),
 *   Y = A^T M A + bias, act.
 * F(2x2, 3x3): 16 GEMMs, 2.25x fewer multiplies than the direct conv;
 * transforms with coefficients 0, +-1, +-1/2.  F(4x4, 3x3) (interpolation
 * points 0, +-1, +-2, inf): 36 GEMMs, 4x fewer multiplies; coefficients up
 * to 5 (B), 8 (A), 1/24 (G), so rounding grows about tenfold over F(2x2),
 * still ~1e-6 of the input magnitudes for these sizes (tests/test_winograd.py).
 * U = G g G^T is computed in double and packed once as T*T GEMM weight sets
 * (mv_pack_conv3x3_wino_weights, `tmp` holds Cout*Cin floats).  Tiles are
 * processed in blocks of rows (mv_conv3x3_wino_block_rows) so V and M stay
 * near L2; parallel over (image, block, output-channel slice: small maps
 * that have fewer blocks than workers split Cout too).  Each output
 * element's arithmetic does not depend on the blocking, so results are the
 * same for any nth.  The fast kernels fuse the transforms' multiply-adds
 * (VFMA); the reference does the same with fmaf, so both round alike.
 * Non-finite inputs: F(2x2) keeps NaN / Inf inside each output's 3x3
 * receptive field (an Inf may come out as NaN); F(4x4) spreads them over
 * the output tiles whose input tile holds one (up to 3 pixels away), since
 * inf * 0 does not cancel. */
/* Shapes the Winograd kernel computes (3x3, stride 1, pad 1, dilation 1, no
 * residual), and whether it pays: with fewer than MV_WINO_MIN_CHANNELS input
 * or output channels the transforms cost more than the multiplies saved. */
#define MV_WINO_MIN_CHANNELS 16
int mv_conv3x3_wino_shape_ok(int kh, int kw, int stride, int pad, int dil, int has_res);
int mv_conv3x3_wino_pays(int Cin, int Cout);
/* The tile a graph uses for an H x W map: 4 where the map holds enough
 * 4x4 tiles to keep the GEMMs tall, else 2. */
int mv_conv3x3_wino_tile(int H, int W);
size_t mv_conv3x3_wino_packed_floats(int m, int Cin, int Cout);
void mv_pack_conv3x3_wino_weights(int m, const float *W, int Cout, int Cin, float *tmp, float *Up);
int mv_conv3x3_wino_block_rows(int m, int H, int W, int nth);
size_t mv_conv3x3_wino_scratch_floats(int m, int H, int W, int Cin, int Cout, int nth);
/* Output-channel slices per block (1 unless the map has fewer blocks than
 * nth), and the work units: B * blocks * slices. */
int mv_conv3x3_wino_slices(int m, int B, int H, int W, int Cout, int nth);
void mv_conv3x3_wino_nhwc_f32__ref(const mv_conv2d_args *a, int tid, int nth);
void mv_conv3x3_wino_nhwc_f32__avx2(const mv_conv2d_args *a, int tid, int nth);
void mv_conv3x3_wino_nhwc_f32__avx512(const mv_conv2d_args *a, int tid, int nth);
void mv_conv3x3_wino_nhwc_f32__neon(const mv_conv2d_args *a, int tid, int nth);

/* ---- depthwise 3x3 convolution -------------------------------------------
 * Y[b, oy, ox, c] = act(sum_{ky,kx} X[b, iy, ix, c] * W[c, 0, ky, kx] + bias[c])
 * Mirrors conv2d(groups = C, kernel 3).  Wt is tap-major [9][C]
 * (mv_pack_dwconv2d_weights).  Parallel over output rows. */
typedef struct {
    int B, H, W, C;
    const float *X;
    int OH, OW, stride, pad, dil;
    const float *Wt;          /* [9, C] */
    const float *bias;        /* [C] or NULL */
    float *Y;
    int act;
} mv_dwconv2d_args;

void mv_pack_dwconv2d_weights(const float *W, int C, float *Wt);
void mv_dwconv2d_nhwc_f32__ref(const mv_dwconv2d_args *a, int tid, int nth);
void mv_dwconv2d_nhwc_f32__avx2(const mv_dwconv2d_args *a, int tid, int nth);
void mv_dwconv2d_nhwc_f32__avx512(const mv_dwconv2d_args *a, int tid, int nth);
void mv_dwconv2d_nhwc_f32__neon(const mv_dwconv2d_args *a, int tid, int nth);
/* One output row (all OW pixels, all C channels) from the three input rows
 * its taps read: rows[ky] is input row oy*stride - pad + ky*dil (W x C,
 * contiguous) or NULL where that row is outside the map.  a->X, a->B, a->H,
 * a->OH and a->Y are not read.  The full kernels above are this per row. */
void mv_dwconv2d_row_nhwc_f32__ref(const mv_dwconv2d_args *a, const float *const rows[3], float *yrow);
void mv_dwconv2d_row_nhwc_f32__avx2(const mv_dwconv2d_args *a, const float *const rows[3], float *yrow);
void mv_dwconv2d_row_nhwc_f32__avx512(const mv_dwconv2d_args *a, const float *const rows[3], float *yrow);
void mv_dwconv2d_row_nhwc_f32__neon(const mv_dwconv2d_args *a, const float *const rows[3], float *yrow);
/* rows[] of output row oy of image b of a full map (helper of the above). */
void mv_dwconv2d_rows(const mv_dwconv2d_args *a, int b, int oy, const float *rows[3]);

/* ---- multi-head self-attention on patch-grouped pixels -------------------
 * Tokens are the pixels of a [B, H, W] map (H % ph == 0, W % pw == 0).
 * Sequence (b, py, px) holds the pixels (nh*ph + py, nw*pw + px), token
 * index n = nh*(W/pw) + nw: exactly MobileViT's unfold, so no unfold/fold
 * copies are needed.  With ph = pw = 1, H = 1, W = N it is plain attention
 * over B sequences of N tokens.
 * QKV rows are [q | k | v], each head-major (head*hd + j).
 * O[row, h*hd + j] = sum_n softmax_n(scale * q . k_n) v_n[j].
 * Mirrors cvnets MultiHeadAttention / timm Attention (without projections).
 * Parallel over (sequence, head, query block).  Each concurrent caller
 * passes its own scratch (tid/nth only select the share of the work). */
typedef struct {
    int B, H, W, ph, pw;
    int D, heads;
    float scale;
    const float *QKV; ptrdiff_t ldqkv;
    float *O; ptrdiff_t ldo;
    float *scratch;            /* the calling worker's own scratch: mv_attention_scratch_floats(...) */
} mv_attention_args;

size_t mv_attention_scratch_floats(int N, int hd);
void mv_attention_nhwc_f32__ref(const mv_attention_args *a, int tid, int nth);
void mv_attention_nhwc_f32__avx2(const mv_attention_args *a, int tid, int nth);
void mv_attention_nhwc_f32__avx512(const mv_attention_args *a, int tid, int nth);
void mv_attention_nhwc_f32__neon(const mv_attention_args *a, int tid, int nth);

/* ---- MobileViTv2 separable self-attention (no projections) ---------------
 * qkv rows are [q (1) | k (D) | v (D)].  For each sequence (b, py, px) of
 * patch-grouped pixels (as in mv_attention_args):
 *   s_n = softmax_n(q_n),  c = sum_n s_n k_n,  out_n = relu(v_n) * c.
 * Mirrors timm LinearSelfAttention / HF MobileViTV2LinearSelfAttention
 * between qkv_proj and out_proj.  Parallel over sequences; each concurrent
 * caller passes its own scratch of mv_sep_attention_scratch_floats(N, D). */
typedef struct {
    int B, H, W, ph, pw, D;
    const float *QKV; ptrdiff_t ldqkv;
    float *O; ptrdiff_t ldo;
    float *scratch;
} mv_sep_attention_args;

size_t mv_sep_attention_scratch_floats(int N, int D);
void mv_sep_attention_nhwc_f32__ref(const mv_sep_attention_args *a, int tid, int nth);
void mv_sep_attention_nhwc_f32__avx2(const mv_sep_attention_args *a, int tid, int nth);
void mv_sep_attention_nhwc_f32__avx512(const mv_sep_attention_args *a, int tid, int nth);
void mv_sep_attention_nhwc_f32__neon(const mv_sep_attention_args *a, int tid, int nth);

/* ---- crop / zero-pad (top-left anchored) ----------------------------------
 * Y[b, y, x] = X[b, y, x] where inside both, else 0.  Used for HF
 * MobileViTv2's odd-size handling (unfold drops the last row/column, fold
 * writes zeros there). */
void mv_crop_pad_nhwc_f32__ref(const float *X, int B, int H, int W, int C,
                               float *Y, int OH, int OW, int tid, int nth);

/* ---- LayerNorm over the channel axis of each row -------------------------
 * Y = (X - mean) / sqrt(var + eps) * gamma + beta, biased variance, two-pass.
 * Mirrors torch.nn.LayerNorm(D).  Parallel over rows. */
void mv_layernorm_nhwc_f32__ref(const float *X, ptrdiff_t M, int D,
                                ptrdiff_t ldx, const float *gamma,
                                const float *beta, float eps, float *Y,
                                ptrdiff_t ldy, int tid, int nth);
void mv_layernorm_nhwc_f32__avx2(const float *X, ptrdiff_t M, int D,
                                 ptrdiff_t ldx, const float *gamma,
                                 const float *beta, float eps, float *Y,
                                 ptrdiff_t ldy, int tid, int nth);
void mv_layernorm_nhwc_f32__avx512(const float *X, ptrdiff_t M, int D,
                                   ptrdiff_t ldx, const float *gamma,
                                   const float *beta, float eps, float *Y,
                                   ptrdiff_t ldy, int tid, int nth);
void mv_layernorm_nhwc_f32__neon(const float *X, ptrdiff_t M, int D,
                                 ptrdiff_t ldx, const float *gamma,
                                 const float *beta, float eps, float *Y,
                                 ptrdiff_t ldy, int tid, int nth);

/* ---- GroupNorm(1, C) per image (MobileViTv2's LayerNorm2d) ---------------
 * statistics over all H*W*C elements of each image (two passes, double
 * accumulation), then Y = (X - mean) * rstd * gamma[c] + beta[c].
 * ref: parallel over images.  SIMD: parallel over pixel rows; every worker
 * computes the full statistics of the images its rows belong to (the same
 * way whatever its share), so a batch of one still uses every thread. */
void mv_groupnorm1_nhwc_f32__ref(const float *X, int B, ptrdiff_t HW, int C,
                                 const float *gamma, const float *beta,
                                 float eps, float *Y, int tid, int nth);
void mv_groupnorm1_nhwc_f32__avx2(const float *X, int B, ptrdiff_t HW, int C,
                                  const float *gamma, const float *beta,
                                  float eps, float *Y, int tid, int nth);
void mv_groupnorm1_nhwc_f32__avx512(const float *X, int B, ptrdiff_t HW, int C,
                                    const float *gamma, const float *beta,
                                    float eps, float *Y, int tid, int nth);
void mv_groupnorm1_nhwc_f32__neon(const float *X, int B, ptrdiff_t HW, int C,
                                  const float *gamma, const float *beta,
                                  float eps, float *Y, int tid, int nth);

/* ---- BatchNorm (inference), not folded: for tests and debugging ----------
 * Y = (X - mean) / sqrt(var + eps) * gamma + beta per channel. */
void mv_batchnorm_nhwc_f32__ref(const float *X, ptrdiff_t M, int C,
                                const float *mean, const float *var,
                                const float *gamma, const float *beta,
                                float eps, float *Y, int tid, int nth);

/* ---- element-wise ---------------------------------------------------------
 * act: SiLU x*sigmoid(x) (x / (1 + exp(-x))), ReLU max(x, 0). */
void mv_act_f32__ref(const float *X, ptrdiff_t n, int act, float *Y, int tid,
                     int nth);
void mv_act_f32__avx2(const float *X, ptrdiff_t n, int act, float *Y, int tid,
                      int nth);
void mv_act_f32__avx512(const float *X, ptrdiff_t n, int act, float *Y,
                        int tid, int nth);
void mv_act_f32__neon(const float *X, ptrdiff_t n, int act, float *Y,
                      int tid, int nth);
void mv_add_f32__ref(const float *A, const float *B, ptrdiff_t n, float *Y,
                     int tid, int nth);
/* Y[m, 0:C1] = X1[m], Y[m, C1:C1+C2] = X2[m] (torch.cat(dim=1) in NHWC). */
void mv_concat_nhwc_f32__ref(const float *X1, int C1, const float *X2, int C2,
                             ptrdiff_t M, float *Y, int tid, int nth);

/* ---- layout ---------------------------------------------------------------*/
void mv_nchw_to_nhwc_f32__ref(const float *X, int B, int C, int H, int W,
                              float *Y, int tid, int nth);
void mv_nhwc_to_nchw_f32__ref(const float *X, int B, int C, int H, int W,
                              ptrdiff_t ldx, float *Y, int tid, int nth);

/* ---- unfold / fold between maps and patch sequences -----------------------
 * tokens[b*P + py*pw + px, nh*nW + nw, c] = X[b, nh*ph + py, nw*pw + px, c]
 * (MobileViT v1 unfolding, P = ph*pw, N = nH*nW).  fold is its inverse. */
void mv_unfold_nhwc_f32__ref(const float *X, int B, int H, int W, int C,
                             int ph, int pw, float *T, int tid, int nth);
void mv_fold_nhwc_f32__ref(const float *T, int B, int H, int W, int C, int ph,
                           int pw, float *X, int tid, int nth);

/* ---- bilinear resize, PyTorch semantics (antialias off) -------------------
 * Mirrors F.interpolate(mode='bilinear', align_corners=ac, size=(OH, OW)),
 * NaN/Inf included (an axis kept at its size interpolates a pixel with
 * itself, weight 0: Inf -> NaN there, as in aten).
 * Parallel over output rows. */
void mv_resize_bilinear_nhwc_f32__ref(const float *X, int B, int H, int W,
                                      int C, float *Y, int OH, int OW,
                                      int align_corners, int tid, int nth);
/* The same resize fused with an argmax over channels: labels[B, OH, OW]
 * (int64) = argmax_c of the resized Y, as torch.argmax(F.interpolate(...),
 * dim=1): the first maximum wins and a NaN counts as the maximum (the first
 * NaN).  Needs no float output, so a mask of a large image costs 8 bytes
 * per pixel instead of 4 * C.  Parallel over output rows. */
void mv_resize_bilinear_argmax_nhwc_f32__ref(const float *X, int B, int H, int W, int C,
                                             int64_t *labels, int OH, int OW, int align_corners,
                                             int tid, int nth);

/* ---- global average pooling: Y[b, c] = mean over H*W ---------------------*/
void mv_global_avg_pool_nhwc_f32__ref(const float *X, int B, ptrdiff_t HW, int C,
                          ptrdiff_t ldx, float *Y, int tid, int nth);

/* ---- dispatch --------------------------------------------------------------*/
typedef void (*mv_gemm_fn)(const mv_gemm_args *, int, int);
typedef void (*mv_conv2d_fn)(const mv_conv2d_args *, int, int);
typedef void (*mv_dwconv2d_fn)(const mv_dwconv2d_args *, int, int);
typedef void (*mv_dwconv2d_row_fn)(const mv_dwconv2d_args *, const float *const[3], float *);
typedef void (*mv_attention_fn)(const mv_attention_args *, int, int);
typedef void (*mv_act_fn)(const float *, ptrdiff_t, int, float *, int, int);
typedef void (*mv_layernorm_fn)(const float *, ptrdiff_t, int, ptrdiff_t,
                                const float *, const float *, float, float *,
                                ptrdiff_t, int, int);
typedef void (*mv_groupnorm1_fn)(const float *, int, ptrdiff_t, int, const float *,
                                 const float *, float, float *, int, int);
typedef void (*mv_sep_attention_fn)(const mv_sep_attention_args *, int, int);

typedef struct {
    const char *name;
    mv_gemm_fn gemm;
    mv_conv2d_fn conv2d;
    mv_conv2d_fn conv3x3_wino;
    mv_dwconv2d_fn dwconv2d;
    mv_dwconv2d_row_fn dwconv2d_row;
    mv_attention_fn attention;
    mv_act_fn act;
    mv_layernorm_fn layernorm;
    mv_groupnorm1_fn groupnorm1;
    mv_sep_attention_fn sep_attention;
} mv_kernel_table;

/* ---- inverted residual block (MobileNetV2 / MobileViT "MV2"), fused -------
 * Y = project(silu(dw3x3(silu(expand(X))))) [+ X]:
 *   E = act_e(X . We^T + be)             1x1, Cin -> Ce   (packed as GEMM weights)
 *   D = act_dw(dw3x3(E, stride, pad, dil) + bdw)          (tap-major [9][Ce])
 *   Y = D . Wp^T + bp [+ X]               1x1, Ce -> Cout (residual needs
 *                                         stride 1 and Cin == Cout)
 * Mirrors timm's InvertedResidual / cvnets' InvertedResidual with BatchNorm
 * folded.  E and D never exist whole: each worker walks its output rows in
 * groups of `rows`, keeping the expanded input rows those need in a ring of
 * mv_invres_ring_rows(...) rows, so the expanded map stays in L1/L2 instead
 * of making a round trip through memory.  Rows on the edge of a worker's
 * share are expanded by both neighbours (recomputed, not shared).
 * Composite: it runs the GEMM and depthwise-row kernels of the table it is
 * given, so every element is computed exactly as by the three separate
 * kernels of that table (bit-identical; the ref table is its reference).
 * Parallel over output rows (b, oy). */
typedef struct {
    int B, H, W, Cin;
    const float *X;                /* [B, H, W, Cin], also the residual */
    int Ce;
    const float *We, *be;          /* expand: packed [Cin -> Ce], bias [Ce] */
    int act_e;
    int OH, OW, stride, pad, dil;
    const float *Wdw, *bdw;        /* depthwise: [9][Ce], bias [Ce] */
    int act_dw;
    int Cout;
    const float *Wp, *bp;          /* project: packed [Ce -> Cout], bias [Cout] */
    int has_res;
    float *Y;                      /* [B, OH, OW, Cout] */
    int rows;                      /* output rows per group, >= 1 */
    float *scratch;                /* the calling worker's own: mv_invres_scratch_floats(...) */
} mv_invres_args;

int mv_invres_ring_rows(int rows, int stride, int dil);
size_t mv_invres_scratch_floats(int W, int Ce, int OW, int rows, int stride, int dil);
void mv_invres_nhwc_f32(const mv_invres_args *a, const mv_kernel_table *kt, int tid, int nth);

/* Best ISA this CPU and OS support (x86: CPUID + XGETBV; AArch64: neon). */
mv_isa mv_detect_isa(void);
int mv_isa_supported(mv_isa isa);
const mv_kernel_table *mv_kernels(mv_isa isa);
const char *mv_isa_name(mv_isa isa);

#endif /* MV_OPS_H */
