/* simd_avx512.c - AVX-512 (F/BW/DQ/VL) instantiation of simd_kernels.inc.
 * Compiled with a target pragma, never with -march: the module runs on any
 * x86-64 and only calls these after CPUID + XGETBV say the ISA is usable. */
#if defined(__x86_64__) || defined(_M_X64)
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx2"))), apply_to = function)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,fma,avx2")
#endif
#include <immintrin.h>
#include <math.h>
#include "ops.h"

#define MV_ISA_SUFFIX avx512
#define V 16
#define NV 2
#define MR 12
#define GEMM_CASES GEMM_CASE(1) GEMM_CASE(2) GEMM_CASE(3) GEMM_CASE(4) GEMM_CASE(5) GEMM_CASE(6) \
    GEMM_CASE(7) GEMM_CASE(8) GEMM_CASE(9) GEMM_CASE(10) GEMM_CASE(11) GEMM_CASE(12)

/* r[0..15] = the columns of the 16 x 16 block whose rows were r[0..15] */
static inline void mv_avx512_transpose(__m512 r[16]) {
    __m512 t[16], u[16];
    for (int i = 0; i < 8; i++) {   /* pairs of rows interleaved by element */
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++)     /* then by element pair: 4 x 4 blocks per 128-bit lane */
        for (int j = 0; j < 2; j++) {
            __m512d a = _mm512_castps_pd(t[4 * i + j]), b = _mm512_castps_pd(t[4 * i + 2 + j]);
            u[4 * i + 2 * j] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, b));
            u[4 * i + 2 * j + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, b));
        }
    /* u[4i + k] holds column k + 4l of rows 4i..4i+3 in 128-bit lane l */
    for (int k = 0; k < 4; k++) {
        __m512 a = _mm512_shuffle_f32x4(u[k], u[4 + k], 0x88), b = _mm512_shuffle_f32x4(u[k], u[4 + k], 0xDD);
        __m512 c = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0x88), d = _mm512_shuffle_f32x4(u[8 + k], u[12 + k], 0xDD);
        r[k] = _mm512_shuffle_f32x4(a, c, 0x88);
        r[k + 8] = _mm512_shuffle_f32x4(a, c, 0xDD);
        r[k + 4] = _mm512_shuffle_f32x4(b, d, 0x88);
        r[k + 12] = _mm512_shuffle_f32x4(b, d, 0xDD);
    }
}

#define VF __m512
#define VZERO() _mm512_setzero_ps()
#define VLOAD(p) _mm512_loadu_ps(p)
#define VMASK(n) ((__mmask16)((1u << (n)) - 1u))
#define VLOADN(p, n) _mm512_maskz_loadu_ps(VMASK(n), (p))
#define VSTORE(p, v) _mm512_storeu_ps((p), (v))
#define VSTOREN(p, v, n) _mm512_mask_storeu_ps((p), VMASK(n), (v))
#define VBCAST(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps((a), (b), (c))
#define VFNMADD(a, b, c) _mm512_fnmadd_ps((a), (b), (c))
#define VFMSUB(a, b, c) _mm512_fmsub_ps((a), (b), (c))
#define VFNMSUB(a, b, c) _mm512_fnmsub_ps((a), (b), (c))
#define VADD _mm512_add_ps
#define VSUB _mm512_sub_ps
#define VMUL _mm512_mul_ps
#define VDIV _mm512_div_ps
/* max/min return their SECOND operand when either is NaN (and when both
 * are zeros), as on AVX2: x goes second, see simd_kernels.inc */
#define VMAX _mm512_max_ps
#define VMIN _mm512_min_ps
/* exp's argument limited to |x| <= 200 for either sign, enough for scalef
 * to saturate y * 2^n to 0 / inf by itself and for f = t - n to stay exact.
 * Not _mm512_range_ps (one op instead of two): VRANGEPS treats a quiet NaN
 * as missing data and returns the other operand with x's sign, so NaN
 * became exp(+-200) = inf or 0 and a softmax dropped a NaN score of
 * negative sign (inf - inf gives one).  max(lo, min(hi, x)) keeps NaN. */
#define VEXP_CLAMP(x, sgn) _mm512_max_ps(_mm512_set1_ps(-200.0f), _mm512_min_ps(_mm512_set1_ps(200.0f), (x)))
#define VEXP_CLAMP_LO(x) _mm512_max_ps(_mm512_set1_ps(-200.0f), (x))
#define VHSUM(v) _mm512_reduce_add_ps(v)
#define VTRANSPOSE(r) mv_avx512_transpose(r)
#define VROUND(x) _mm512_roundscale_ps((x), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VEXP2I_YSCALE 1.0f
#define VEXP2I(y, n) _mm512_scalef_ps((y), (n))
#define VLOADN_MASKED_ZERO(v, n) _mm512_maskz_mov_ps(VMASK(n), (v))

/* attention: 2 query vectors per block, tiles of 12 x 2 (24 accumulators) */
#define ATT_QV 2
#define ATT_ACC 24

/* depthwise: output pixels per interior group (independent FMA chains) */
#define DW_OX 8

#include "simd_kernels.inc"

#if defined(__clang__)
#pragma clang attribute pop
#elif defined(__GNUC__)
#pragma GCC pop_options
#endif
#endif
