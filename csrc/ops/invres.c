/* invres.c - the fused inverted residual block (expand 1x1 -> depthwise 3x3
 * -> project 1x1), written once over a kernel table.  See ops.h.
 *
 * Memory plan per worker (its scratch):
 *   ring  mv_invres_ring_rows(rows, stride, dil) expanded input rows, W x Ce
 *         each; input row iy lives in slot iy % ring.  A group of output rows
 *         needs input rows [lo, hi] with hi - lo < ring, and rows only move
 *         forward, so the slots it overwrites are never needed again.
 *   band  `rows` depthwise output rows, OW x Ce each: the A matrix of the
 *         projection GEMM, which writes straight into Y.
 * With the usual sizes (W <= 128, Ce <= 512) this is 100-400 KB: L2. */
#include "ops.h"

int mv_invres_ring_rows(int rows, int stride, int dil) {
    return (rows - 1) * stride + 2 * dil + 1;
}

size_t mv_invres_scratch_floats(int W, int Ce, int OW, int rows, int stride, int dil) {
    size_t ring = MV_ROUND_UP((size_t)mv_invres_ring_rows(rows, stride, dil) * W * Ce, 16);
    return ring + MV_ROUND_UP((size_t)rows * OW * Ce, 16);
}

void mv_invres_nhwc_f32(const mv_invres_args *a, const mv_kernel_table *kt, int tid, int nth) {
    const int H = a->H, W = a->W, Ce = a->Ce, s = a->stride;
    const int cap = mv_invres_ring_rows(a->rows, s, a->dil);
    float *ring = a->scratch;
    float *band = ring + MV_ROUND_UP((size_t)cap * W * Ce, 16);
    const mv_dwconv2d_args dw = {.B = 1, .H = H, .W = W, .C = Ce, .X = NULL, .OH = a->OH, .OW = a->OW,
                                 .stride = s, .pad = a->pad, .dil = a->dil, .Wt = a->Wdw, .bias = a->bdw,
                                 .Y = NULL, .act = a->act_dw};
    ptrdiff_t r0, r1;
    mv_partition((ptrdiff_t)a->B * a->OH, tid, nth, &r0, &r1);
    int cur_b = -1, have_hi = -1;        /* expanded rows of image cur_b done up to have_hi */
    for (ptrdiff_t r = r0; r < r1;) {
        int b = (int)(r / a->OH), oy0 = (int)(r % a->OH);
        int g = (int)MV_MIN((ptrdiff_t)MV_MIN(a->rows, a->OH - oy0), r1 - r);
        if (b != cur_b) { cur_b = b; have_hi = -1; }
        int lo = MV_MAX(0, oy0 * s - a->pad);
        int hi = MV_MIN(H - 1, (oy0 + g - 1) * s - a->pad + 2 * a->dil);
        /* expand the input rows this group still lacks, in runs of adjacent slots */
        for (int iy = MV_MAX(lo, have_hi + 1); iy <= hi;) {
            int slot = iy % cap, n = MV_MIN(hi - iy + 1, cap - slot);
            mv_gemm_args e = {.M = (ptrdiff_t)n * W, .N = Ce, .K = a->Cin,
                              .A = a->X + ((ptrdiff_t)b * H + iy) * W * a->Cin, .lda = a->Cin,
                              .Wp = a->We, .bias = a->be, .C = ring + (size_t)slot * W * Ce, .ldc = Ce,
                              .act = a->act_e};
            kt->gemm(&e, 0, 1);
            iy += n;
        }
        if (hi > have_hi) have_hi = hi;
        /* depthwise rows into the band */
        for (int j = 0; j < g; j++) {
            const float *rows[3];
            for (int ky = 0; ky < 3; ky++) {
                int iy = (oy0 + j) * s - a->pad + ky * a->dil;
                rows[ky] = (iy < 0 || iy >= H) ? NULL : ring + (size_t)(iy % cap) * W * Ce;
            }
            kt->dwconv2d_row(&dw, rows, band + (size_t)j * a->OW * Ce);
        }
        /* project (+ residual) straight into Y */
        ptrdiff_t orow = ((ptrdiff_t)b * a->OH + oy0) * a->OW;
        mv_gemm_args pj = {.M = (ptrdiff_t)g * a->OW, .N = a->Cout, .K = Ce, .A = band, .lda = Ce,
                           .Wp = a->Wp, .bias = a->bp, .R = a->has_res ? a->X + orow * a->Cin : NULL,
                           .ldr = a->Cin, .C = a->Y + orow * a->Cout, .ldc = a->Cout, .act = MV_ACT_NONE};
        kt->gemm(&pj, 0, 1);
        r += g;
    }
}
