/* simd_avx2.c - AVX2 + FMA3 instantiation of simd_kernels.inc (see
 * simd_avx512.c for how ISA code is isolated). */
#if defined(__x86_64__) || defined(_M_X64)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#endif
#include <immintrin.h>
#include <math.h>
#include "ops.h"

#define MV_ISA_SUFFIX avx2
#define V 8
#define NV 2
#define MR 6
#define GEMM_CASES GEMM_CASE(1) GEMM_CASE(2) GEMM_CASE(3) GEMM_CASE(4) GEMM_CASE(5) GEMM_CASE(6)
/* GEMMs of up to 256 rows (the Winograd position GEMMs, batch-1 transformer
 * linears of 16x16 and 8x8 maps, the classifier): panel-wide tiles of up to
 * 3 rows x 4 vectors (gemm.simd.inc).  Threshold measured on MobileViT-S,
 * 1T, Zen 4: 32 rows 41.0 ms, 64 rows 40.4, 256 rows 39.9 (narrow tiles
 * only: 42.2); 3-row tiles beat 2-row ones at 16 and 32 rows. */
#define GEMM_WIDE_M 256
#define GEMM_WIDE_MR 3

static inline __m256i mv_avx2_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline float mv_avx2_hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
/* (y / 2) * 2^n for s = VEXP_SHIFTER + n, n integral in [-126, 128]: as
 * y * 2^(n-1) with 2^(n-1) built from exponent bits n + 126, which are s's
 * low mantissa bits (the shift drops the rest; n = -126 gives bits 0, so
 * +0).  The caller's polynomial carries the factor 2 (VEXP2I_YSCALE), so
 * n = 128 is reachable and exp saturates to +inf exactly where the true
 * value overflows. */
static inline __m256 mv_avx2_exp2i_bits(__m256 y, __m256 s) {
    return _mm256_mul_ps(y, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(s), 23)));
}

/* r[0..7] = the columns of the 8 x 8 block whose rows were r[0..7] */
static inline void mv_avx2_transpose(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++) {
            u[4 * i + j] = _mm256_shuffle_ps(t[4 * i + j], t[4 * i + 2 + j], 0x44);
            u[4 * i + 2 + j] = _mm256_shuffle_ps(t[4 * i + j], t[4 * i + 2 + j], 0xEE);
        }
    /* u[0..3] hold rows 0-3 of columns (0, 2, 1, 3) and (4, 6, 5, 7) by half */
    static const int col[4] = {0, 2, 1, 3};
    for (int k = 0; k < 4; k++) {
        r[col[k]] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x20);
        r[col[k] + 4] = _mm256_permute2f128_ps(u[k], u[4 + k], 0x31);
    }
}

#define VF __m256
#define VZERO() _mm256_setzero_ps()
#define VLOAD(p) _mm256_loadu_ps(p)
#define VLOADN(p, n) _mm256_maskload_ps((p), mv_avx2_mask(n))
#define VSTORE(p, v) _mm256_storeu_ps((p), (v))
#define VSTOREN(p, v, n) _mm256_maskstore_ps((p), mv_avx2_mask(n), (v))
#define VBCAST(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps((a), (b), (c))
#define VFNMADD(a, b, c) _mm256_fnmadd_ps((a), (b), (c))
#define VFMSUB(a, b, c) _mm256_fmsub_ps((a), (b), (c))
#define VFNMSUB(a, b, c) _mm256_fnmsub_ps((a), (b), (c))
#define VADD _mm256_add_ps
#define VSUB _mm256_sub_ps
#define VMUL _mm256_mul_ps
#define VDIV _mm256_div_ps
/* max/min return their SECOND operand when either is NaN (and when both
 * are zeros): x goes second so NaN (and -0) pass, see simd_kernels.inc */
#define VMAX _mm256_max_ps
#define VMIN _mm256_min_ps
/* exp(sgn * x)'s argument limited so that t = sgn * x * log2(e) lies in
 * [-126, 128.3]: n = round(t) in [-126, 128] is what mv_avx2_exp2i_bits takes;
 * t >= 128 (x beyond ln(FLT_MAX) = 88.72, up to +inf) gives +inf and
 * t < -125.5 gives +0, so exp(+-inf) = inf / 0 and SiLU's x / (1 + exp(-x))
 * is -0 below about -88.7 and NaN at x = -inf, as in the reference.  NaN
 * passes both limits (x is the second operand). */
#define MV_AVX2_EXP_LO (-87.3365447505531f)   /* -126 ln 2 */
#define MV_AVX2_EXP_HI 88.9f                  /* 128.26 / log2(e) */
#define VEXP_CLAMP(x, sgn)                                                                       \
    ((sgn) > 0 ? _mm256_max_ps(_mm256_set1_ps(MV_AVX2_EXP_LO), _mm256_min_ps(_mm256_set1_ps(MV_AVX2_EXP_HI), (x))) \
               : _mm256_max_ps(_mm256_set1_ps(-MV_AVX2_EXP_HI), _mm256_min_ps(_mm256_set1_ps(-MV_AVX2_EXP_LO), (x))))
#define VEXP_CLAMP_LO(x) _mm256_max_ps(_mm256_set1_ps(MV_AVX2_EXP_LO), (x))
#define VHSUM(v) mv_avx2_hsum(v)
#define VTRANSPOSE(r) mv_avx2_transpose(r)
#define VEXP2I_YSCALE 2.0f
#define VEXP2I_BITS(y, s) mv_avx2_exp2i_bits((y), (s))
#define VLOADN_MASKED_ZERO(v, n) _mm256_and_ps((v), _mm256_castsi256_ps(mv_avx2_mask(n)))

/* attention: 3 query vectors per block, ATT_ACC accumulators per tile
 * (12 of the 16 registers: tiles of 4 x 3, 6 x 2, 12 x 1) */
#define ATT_QV 3
#define ATT_ACC 12

/* depthwise: output pixels per interior group (independent FMA chains) */
#define DW_OX 4

#include "simd_kernels.inc"

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif
#endif
