/* dwconv2d.c - depthwise 3x3 convolution, NHWC: packing and the scalar
 * reference.  See ops.h for the contract. */
#include "ops.h"
#include "act_ref.h"

/* W: [C, 1, 3, 3] -> Wt[t][c] (tap-major, channels contiguous). */
void mv_pack_dwconv2d_weights(const float *W, int C, float *Wt) {
    for (int t = 0; t < 9; t++)
        for (int c = 0; c < C; c++) Wt[(size_t)t * C + c] = W[(size_t)c * 9 + t];
}

/* Reference: taps in (ky, kx) order, out-of-range taps skipped. */
void mv_dwconv2d_row_nhwc_f32__ref(const mv_dwconv2d_args *a, const float *const rows[3], float *yrow) {
    int C = a->C;
    for (int ox = 0; ox < a->OW; ox++) {
        float *y = yrow + (ptrdiff_t)ox * C;
        for (int c = 0; c < C; c++) {
            float acc = 0.0f;
            for (int ky = 0; ky < 3; ky++) {
                if (!rows[ky]) continue;
                for (int kx = 0; kx < 3; kx++) {
                    int ix = ox * a->stride - a->pad + kx * a->dil;
                    if (ix < 0 || ix >= a->W) continue;
                    acc += rows[ky][(ptrdiff_t)ix * C + c] * a->Wt[(size_t)(ky * 3 + kx) * C + c];
                }
            }
            if (a->bias) acc += a->bias[c];
            y[c] = mv_act_scalar(acc, a->act);
        }
    }
}

/* Input row pointers of output row oy of image b (NULL outside the map). */
void mv_dwconv2d_rows(const mv_dwconv2d_args *a, int b, int oy, const float *rows[3]) {
    for (int ky = 0; ky < 3; ky++) {
        int iy = oy * a->stride - a->pad + ky * a->dil;
        rows[ky] = (iy < 0 || iy >= a->H) ? NULL : a->X + ((ptrdiff_t)b * a->H + iy) * a->W * a->C;
    }
}

/* Split over output rows (b, oy). */
void mv_dwconv2d_nhwc_f32__ref(const mv_dwconv2d_args *a, int tid, int nth) {
    ptrdiff_t r0, r1;
    mv_partition((ptrdiff_t)a->B * a->OH, tid, nth, &r0, &r1);
    for (ptrdiff_t r = r0; r < r1; r++) {
        const float *rows[3];
        mv_dwconv2d_rows(a, (int)(r / a->OH), (int)(r % a->OH), rows);
        mv_dwconv2d_row_nhwc_f32__ref(a, rows, a->Y + r * a->OW * a->C);
    }
}
