/* resize.c - bilinear resize with PyTorch's index rules (antialias off).
 * See ops.h for the contract. */
#include <math.h>
#include <string.h>
#include "ops.h"

/* Source coordinate as aten's area_pixel_compute_source_index, in float. */
static void src_index(int o, int in, int out, int align_corners, int *i0,
                      int *i1, float *lam) {
    float src;
    if (align_corners) {
        float scale = out > 1 ? (float)(in - 1) / (float)(out - 1) : 0.0f;
        src = scale * (float)o;
    } else {
        float scale = (float)in / (float)out;
        src = scale * ((float)o + 0.5f) - 0.5f;
        if (src < 0.0f) src = 0.0f;
    }
    int lo = (int)src;
    if (lo > in - 1) lo = in - 1;
    *i0 = lo;
    /* an axis kept at its size (scale 1, lam = 0) takes its second tap from
     * the same pixel, as aten does: the output is x + 0 * x, so an Inf
     * becomes NaN there and does not leak into its neighbour as 0 * Inf */
    *i1 = lo + (lo < in - 1 && in != out ? 1 : 0);
    *lam = src - (float)lo;
}

/* Channel c of the bilinear sample between pixels x0/x1 of rows row0/row1:
 * the one expression both the resize and the fused resize + argmax use, so
 * the argmax sees exactly the floats the resize writes. */
static inline float bilerp(const float *row0, const float *row1, int x0, int x1, float lx, float ly,
                           int C, int c) {
    float top = (1.0f - lx) * row0[(ptrdiff_t)x0 * C + c] + lx * row0[(ptrdiff_t)x1 * C + c];
    float bot = (1.0f - lx) * row1[(ptrdiff_t)x0 * C + c] + lx * row1[(ptrdiff_t)x1 * C + c];
    return (1.0f - ly) * top + ly * bot;
}

void mv_resize_bilinear_nhwc_f32__ref(const float *X, int B, int H, int W,
                                      int C, float *Y, int OH, int OW,
                                      int align_corners, int tid, int nth) {
    ptrdiff_t r0, r1;
    mv_partition((ptrdiff_t)B * OH, tid, nth, &r0, &r1);
    for (ptrdiff_t r = r0; r < r1; r++) {
        int b = (int)(r / OH), oy = (int)(r % OH);
        int y0, y1, x0, x1;
        float ly, lx;
        src_index(oy, H, OH, align_corners, &y0, &y1, &ly);
        const float *row0 = X + ((ptrdiff_t)b * H + y0) * W * C;
        const float *row1 = X + ((ptrdiff_t)b * H + y1) * W * C;
        for (int ox = 0; ox < OW; ox++) {
            src_index(ox, W, OW, align_corners, &x0, &x1, &lx);
            float *y = Y + (r * OW + ox) * C;
            for (int c = 0; c < C; c++) y[c] = bilerp(row0, row1, x0, x1, lx, ly, C, c);
        }
    }
}

void mv_resize_bilinear_argmax_nhwc_f32__ref(const float *X, int B, int H, int W, int C,
                                             int64_t *labels, int OH, int OW, int align_corners,
                                             int tid, int nth) {
    ptrdiff_t r0, r1;
    mv_partition((ptrdiff_t)B * OH, tid, nth, &r0, &r1);
    for (ptrdiff_t r = r0; r < r1; r++) {
        int b = (int)(r / OH), oy = (int)(r % OH);
        int y0, y1, x0, x1;
        float ly, lx;
        src_index(oy, H, OH, align_corners, &y0, &y1, &ly);
        const float *row0 = X + ((ptrdiff_t)b * H + y0) * W * C;
        const float *row1 = X + ((ptrdiff_t)b * H + y1) * W * C;
        for (int ox = 0; ox < OW; ox++) {
            src_index(ox, W, OW, align_corners, &x0, &x1, &lx);
            int best = 0;
            float bv = 0.0f;
            for (int c = 0; c < C; c++) {
                float v = bilerp(row0, row1, x0, x1, lx, ly, C, c);
                if (c == 0 || v > bv || (v != v && bv == bv)) { best = c; bv = v; }
            }
            labels[r * OW + ox] = best;
        }
    }
}

void mv_crop_pad_nhwc_f32__ref(const float *X, int B, int H, int W, int C,
                               float *Y, int OH, int OW, int tid, int nth) {
    ptrdiff_t r0, r1;
    mv_partition((ptrdiff_t)B * OH, tid, nth, &r0, &r1);
    int cw = MV_MIN(W, OW);
    for (ptrdiff_t r = r0; r < r1; r++) {
        int b = (int)(r / OH), y = (int)(r % OH);
        float *dst = Y + r * OW * C;
        if (y < H) {
            memcpy(dst, X + (((ptrdiff_t)b * H + y) * W) * C, sizeof(float) * (size_t)cw * C);
            memset(dst + (ptrdiff_t)cw * C, 0, sizeof(float) * (size_t)(OW - cw) * C);
        } else {
            memset(dst, 0, sizeof(float) * (size_t)OW * C);
        }
    }
}
