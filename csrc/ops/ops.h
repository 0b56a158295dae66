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
} mv_conv2d_args;

size_t mv_conv2d_packed_floats(int kh, int kw, int Cin, int Cout);
/* W: [Cout, Cin, kh, kw] (PyTorch layout). */
void mv_pack_conv2d_weights(const float *W, int Cout, int Cin, int kh, int kw,
                            float *Wp);
int mv_conv_out_size(int in, int k, int stride, int pad, int dil);
void mv_conv2d_nhwc_f32__ref(const mv_conv2d_args *a, int tid, int nth);
void mv_conv2d_nhwc_f32__avx2(const mv_conv2d_args *a, int tid, int nth);
void mv_conv2d_nhwc_f32__avx512(const mv_conv2d_args *a, int tid, int nth);

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

/* ---- GroupNorm(1, C) per image (MobileViTv2's LayerNorm2d) ---------------
 * statistics over all H*W*C elements of each image. Parallel over images. */
void mv_groupnorm1_nhwc_f32__ref(const float *X, int B, ptrdiff_t HW, int C,
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
 * Mirrors F.interpolate(mode='bilinear', align_corners=ac, size=(OH, OW)).
 * Parallel over output rows. */
void mv_resize_bilinear_nhwc_f32__ref(const float *X, int B, int H, int W,
                                      int C, float *Y, int OH, int OW,
                                      int align_corners, int tid, int nth);

/* ---- global average pooling: Y[b, c] = mean over H*W ---------------------*/
void mv_gap_nhwc_f32__ref(const float *X, int B, ptrdiff_t HW, int C,
                          ptrdiff_t ldx, float *Y, int tid, int nth);

/* ---- dispatch --------------------------------------------------------------*/
typedef void (*mv_gemm_fn)(const mv_gemm_args *, int, int);
typedef void (*mv_conv2d_fn)(const mv_conv2d_args *, int, int);
typedef void (*mv_dwconv2d_fn)(const mv_dwconv2d_args *, int, int);
typedef void (*mv_attention_fn)(const mv_attention_args *, int, int);
typedef void (*mv_act_fn)(const float *, ptrdiff_t, int, float *, int, int);
typedef void (*mv_layernorm_fn)(const float *, ptrdiff_t, int, ptrdiff_t,
                                const float *, const float *, float, float *,
                                ptrdiff_t, int, int);

typedef struct {
    const char *name;
    mv_gemm_fn gemm;
    mv_conv2d_fn conv2d;
    mv_dwconv2d_fn dwconv2d;
    mv_attention_fn attention;
    mv_act_fn act;
    mv_layernorm_fn layernorm;
} mv_kernel_table;

/* Best ISA this CPU and OS support (CPUID + XGETBV). */
mv_isa mv_detect_isa(void);
int mv_isa_supported(mv_isa isa);
const mv_kernel_table *mv_kernels(mv_isa isa);
const char *mv_isa_name(mv_isa isa);

#endif /* MV_OPS_H */
