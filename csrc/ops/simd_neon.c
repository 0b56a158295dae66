/* simd_neon.c - AArch64 Advanced SIMD (NEON, 128-bit, 4 float lanes)
 * instantiation of simd_kernels.inc.  NEON and the FMA instruction are part
 * of the AArch64 base ISA, so no target pragma is needed and the file is
 * compiled with the same flags as the rest; on any other architecture it
 * is empty (as simd_avx2.c / simd_avx512.c are on AArch64).
 *
 * Register budget (32 q registers):
 *   GEMM / implicit-GEMM conv  8 rows x 8 columns (MR = 8, NV = 2): 16
 *       accumulators + 2 weight vectors + the row elements of A (broadcast
 *       by the FMA's by-element form or ld1r) = at most 26, no spills.
 *       16 independent FMA chains cover a 4-cycle FMA latency on 4 pipes
 *       (Apple M1, Neoverse V1) or 2 pipes (Cortex-A76 / Neoverse N1).
 *       NV is 2 on every ISA: gemm.simd.inc and conv2d.simd.inc compute a
 *       chunk with either NV vectors or one, so NV > 2 would leave columns
 *       of a narrow last chunk uncomputed.  NV * V = 8 divides MV_NR = 32.
 *   attention  12 keys (or head dims) x 2 query vectors: 24 accumulators +
 *       2 query vectors + a broadcast, as on AVX-512 (also 32 registers).
 *   depthwise  8 output pixels per group: 8 accumulators + up to 17 input
 *       vectors (stride 2) + a weight vector.
 *
 * Semantics are the x86 ones the contract (simd_common.inc) is written in:
 *   - VMAX / VMIN return the SECOND operand when either is NaN or both are
 *     zeros, like maxps / minps.  Neither FMAX (NaN if either is NaN) nor
 *     FMAXNM (the number) does that, so they are a compare and a select:
 *     max(a, b) = a > b ? a : b, min(a, b) = a < b ? a : b, lane-wise.
 *   - exp's 2^n comes from exponent bits as on AVX2 (same clamp, same
 *     scale 2, n rounded by the same shifter add, ties to even); for NaN
 *     the bits are whatever the NaN's payload gives, harmless since y is
 *     NaN then.
 *   - Masked loads read only the n valid floats (lane by lane, never past
 *     the end of the array) and leave the other lanes +0; masked stores
 *     write only n lanes.
 *   - Denormals: Linux (and macOS) start AArch64 threads with FPCR.FZ = 0,
 *     and Advanced SIMD honours FPCR on AArch64 (unlike 32-bit NEON), so
 *     denormal inputs and results are kept.  Nothing here sets FPCR.
 *   - NaNs that an operation generates (inf - inf, 0 * inf) are the ARM
 *     default NaN 0x7FC00000 (x86: 0xFFC00000); no kernel looks at a NaN's
 *     sign, only at NaN-ness.
 *   - Mul and add are separate roundings where the vocabulary says so: GCC
 *     implements vmulq_f32 / vaddq_f32 as plain vector operators, which
 *     -ffp-contract=fast (GCC's default) would fuse into FMLA; the build
 *     passes -ffp-contract=off on AArch64 (setup.py), so only VFMA & co.
 *     are fused, exactly as on x86. */
#if defined(__aarch64__) || defined(_M_ARM64)
#include <arm_neon.h>
#include <math.h>
#include "ops.h"

#define MV_ISA_SUFFIX neon
#define V 4
#define NV 2
#define MR 8
#define GEMM_CASES GEMM_CASE(1) GEMM_CASE(2) GEMM_CASE(3) GEMM_CASE(4) GEMM_CASE(5) GEMM_CASE(6) \
    GEMM_CASE(7) GEMM_CASE(8)

/* n <= 0: zeros; n >= 4: a full load.  Lane by lane otherwise, so nothing
 * past p[n - 1] is read (the last row of a buffer can end at a page). */
static inline float32x4_t mv_neon_loadn(const float *p, int n) {
    if (n >= 4) return vld1q_f32(p);
    float32x4_t v = vdupq_n_f32(0.0f);
    if (n > 0) v = vsetq_lane_f32(p[0], v, 0);
    if (n > 1) v = vsetq_lane_f32(p[1], v, 1);
    if (n > 2) v = vsetq_lane_f32(p[2], v, 2);
    return v;
}
static inline void mv_neon_storen(float *p, float32x4_t v, int n) {
    if (n >= 4) { vst1q_f32(p, v); return; }
    if (n > 0) vst1q_lane_f32(p, v, 0);
    if (n > 1) vst1q_lane_f32(p + 1, v, 1);
    if (n > 2) vst1q_lane_f32(p + 2, v, 2);
}
/* lanes i < n kept, the others +0 */
static inline float32x4_t mv_neon_keep_first(float32x4_t v, int n) {
    static const uint32_t lane[4] = {0, 1, 2, 3};
    uint32x4_t m = vcltq_u32(vld1q_u32(lane), vdupq_n_u32((uint32_t)(n < 0 ? 0 : n)));
    return vreinterpretq_f32_u32(vandq_u32(vreinterpretq_u32_f32(v), m));
}
/* x86 maxps / minps: the second operand unless the first is strictly
 * greater (smaller); a NaN in either place makes the compare false.
 * The mask goes through an empty asm: clang 14 otherwise turns the
 * compare + select into FMAX / FMIN, which give +0 for max(0, -0), so relu
 * lost the sign of -0 (measured: test_kernel_semantics fails with a
 * clang-built simd_neon.c without it).  No instruction is emitted. */
static inline uint32x4_t mv_neon_opaque(uint32x4_t m) {
#if defined(__GNUC__)
    __asm__("" : "+w"(m));
#endif
    return m;
}
static inline float32x4_t mv_neon_max(float32x4_t a, float32x4_t b) {
    return vbslq_f32(mv_neon_opaque(vcgtq_f32(a, b)), a, b);
}
static inline float32x4_t mv_neon_min(float32x4_t a, float32x4_t b) {
    return vbslq_f32(mv_neon_opaque(vcltq_f32(a, b)), a, b);
}
/* (y / 2) * 2^n for s = VEXP_SHIFTER + n, as mv_avx2_exp2i_bits: 2^(n-1)
 * from exponent bits n + 126, s's low mantissa bits (n = -126 gives bits 0,
 * so +0). */
static inline float32x4_t mv_neon_exp2i_bits(float32x4_t y, float32x4_t s) {
    return vmulq_f32(y, vreinterpretq_f32_s32(vshlq_n_s32(vreinterpretq_s32_f32(s), 23)));
}

/* r[0..3] = the columns of the 4 x 4 block whose rows were r[0..3] */
static inline void mv_neon_transpose(float32x4_t r[4]) {
    float32x4_t a = vtrn1q_f32(r[0], r[1]), b = vtrn2q_f32(r[0], r[1]);
    float32x4_t c = vtrn1q_f32(r[2], r[3]), d = vtrn2q_f32(r[2], r[3]);
    r[0] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(c)));
    r[1] = vreinterpretq_f32_f64(vtrn1q_f64(vreinterpretq_f64_f32(b), vreinterpretq_f64_f32(d)));
    r[2] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(a), vreinterpretq_f64_f32(c)));
    r[3] = vreinterpretq_f32_f64(vtrn2q_f64(vreinterpretq_f64_f32(b), vreinterpretq_f64_f32(d)));
}

#define VF float32x4_t
#define VZERO() vdupq_n_f32(0.0f)
#define VLOAD(p) vld1q_f32(p)
#define VLOADN(p, n) mv_neon_loadn((p), (n))
#define VSTORE(p, v) vst1q_f32((p), (v))
#define VSTOREN(p, v, n) mv_neon_storen((p), (v), (n))
#define VBCAST(x) vdupq_n_f32(x)
/* one rounding each, as FMA3 (negating c or the product is exact) */
#define VFMA(a, b, c) vfmaq_f32((c), (a), (b))                  /* a*b + c */
#define VFNMADD(a, b, c) vfmsq_f32((c), (a), (b))               /* c - a*b */
#define VFMSUB(a, b, c) vfmaq_f32(vnegq_f32(c), (a), (b))       /* a*b - c */
#define VFNMSUB(a, b, c) vfmsq_f32(vnegq_f32(c), (a), (b))      /* -a*b - c */
#define VADD vaddq_f32
#define VSUB vsubq_f32
#define VMUL vmulq_f32
#define VDIV vdivq_f32
/* the x86 rule: SECOND operand when either is NaN (and when both are
 * zeros): x goes second so NaN (and -0) pass, see simd_common.inc */
#define VMAX mv_neon_max
#define VMIN mv_neon_min
/* exp's argument limited as on AVX2 (the same 2^n construction):
 * t = sgn * x * log2(e) in [-126, 128.3], NaN passes both limits. */
#define MV_NEON_EXP_LO (-87.3365447505531f)   /* -126 ln 2 */
#define MV_NEON_EXP_HI 88.9f                  /* 128.26 / log2(e) */
#define VEXP_CLAMP(x, sgn)                                                                        \
    ((sgn) > 0 ? mv_neon_max(vdupq_n_f32(MV_NEON_EXP_LO), mv_neon_min(vdupq_n_f32(MV_NEON_EXP_HI), (x))) \
               : mv_neon_max(vdupq_n_f32(-MV_NEON_EXP_HI), mv_neon_min(vdupq_n_f32(-MV_NEON_EXP_LO), (x))))
#define VEXP_CLAMP_LO(x) mv_neon_max(vdupq_n_f32(MV_NEON_EXP_LO), (x))
#define VHSUM(v) vaddvq_f32(v)          /* (v0 + v1) + (v2 + v3): fixed order */
#define VTRANSPOSE(r) mv_neon_transpose(r)
#define VEXP2I_YSCALE 2.0f
#define VEXP2I_BITS(y, s) mv_neon_exp2i_bits((y), (s))
#define VLOADN_MASKED_ZERO(v, n) mv_neon_keep_first((v), (n))

/* attention: 2 query vectors per block, tiles of 12 x 2 (24 accumulators) */
#define ATT_QV 2
#define ATT_ACC 24

/* depthwise: output pixels per interior group (independent FMA chains) */
#define DW_OX 8

#include "simd_kernels.inc"
#endif
