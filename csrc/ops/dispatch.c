/* dispatch.c - CPU feature detection and the per-ISA kernel tables.
 * x86-64: CPUID + XGETBV.  AArch64: Advanced SIMD (NEON) with FMA is part
 * of the base ISA (ARMv8-A), so every AArch64 CPU runs the neon path and
 * there is nothing to probe. */
#include <stdlib.h>
#include "ops.h"

#if defined(__x86_64__) || defined(_M_X64)
#define MV_HAVE_X86 1       /* mv_cpuid_count, mv_xgetbv0: mv_port.h */
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
#define MV_HAVE_NEON 1
#endif

static int mv_detect(mv_isa isa) {
    if (isa == MV_ISA_REF) return 1;
#ifdef MV_HAVE_NEON
    if (isa == MV_ISA_NEON) return 1;
#endif
#ifdef MV_HAVE_X86
    unsigned int r[4];
    if (!mv_cpuid_count(1, 0, r)) return 0;
    unsigned int b, c = r[2];
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return 0;
    unsigned long long xcr0 = mv_xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return 0;              /* XMM + YMM state */
    if (!mv_cpuid_count(7, 0, r)) return 0;
    b = r[1];
    int avx2 = (b >> 5) & 1;
    if (isa == MV_ISA_AVX2) return avx2 && fma;
    if (isa == MV_ISA_AVX512) {
        int f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
        return avx2 && fma && f && dq && bw && vl && (xcr0 & 0xE6) == 0xE6;
    }
#endif
    return 0;
}

int mv_isa_supported(mv_isa isa) {
    static int cache[MV_ISA_COUNT] = {-1, -1, -1, -1};
    if (isa < 0 || isa >= MV_ISA_COUNT) return 0;
    if (cache[isa] < 0) cache[isa] = mv_detect(isa);
    return cache[isa];
}

mv_isa mv_detect_isa(void) {
    if (mv_isa_supported(MV_ISA_NEON)) return MV_ISA_NEON;
    if (mv_isa_supported(MV_ISA_AVX512)) return MV_ISA_AVX512;
    if (mv_isa_supported(MV_ISA_AVX2)) return MV_ISA_AVX2;
    return MV_ISA_REF;
}

const char *mv_isa_name(mv_isa isa) {
    static const char *names[MV_ISA_COUNT] = {"ref", "avx2", "avx512", "neon"};
    return (isa >= 0 && isa < MV_ISA_COUNT) ? names[isa] : "?";
}

/* One table per ISA, filled by the same macro so a family cannot be
 * forgotten on one ISA: every entry is that ISA's instance of the kernel. */
#define MV_KERNEL_TABLE(isa)                                            \
    {                                                                   \
        .name = #isa,                                                   \
        .gemm = mv_gemm_nhwc_f32__##isa,                                \
        .conv2d = mv_conv2d_nhwc_f32__##isa,                            \
        .conv3x3_wino = mv_conv3x3_wino_nhwc_f32__##isa,                \
        .dwconv2d = mv_dwconv2d_nhwc_f32__##isa,                        \
        .dwconv2d_row = mv_dwconv2d_row_nhwc_f32__##isa,                \
        .attention = mv_attention_nhwc_f32__##isa,                      \
        .act = mv_act_f32__##isa,                                       \
        .layernorm = mv_layernorm_nhwc_f32__##isa,                      \
        .groupnorm1 = mv_groupnorm1_nhwc_f32__##isa,                    \
        .sep_attention = mv_sep_attention_nhwc_f32__##isa,              \
    }

static const mv_kernel_table tables[MV_ISA_COUNT] = {
    [MV_ISA_REF] = MV_KERNEL_TABLE(ref),
#ifdef MV_HAVE_X86
    [MV_ISA_AVX2] = MV_KERNEL_TABLE(avx2),
    [MV_ISA_AVX512] = MV_KERNEL_TABLE(avx512),
#endif
#ifdef MV_HAVE_NEON
    [MV_ISA_NEON] = MV_KERNEL_TABLE(neon),
#endif
};
#undef MV_KERNEL_TABLE

const mv_kernel_table *mv_kernels(mv_isa isa) {
    if (!mv_isa_supported(isa)) isa = MV_ISA_REF;
    return &tables[isa];
}

void *mv_aligned_alloc(size_t bytes) {
    if (bytes == 0) bytes = MV_ALIGN;
    if (bytes > SIZE_MAX - MV_ALIGN) return NULL;
    return mv_port_aligned_malloc(MV_ALIGN, MV_ROUND_UP(bytes, MV_ALIGN));
}
void mv_aligned_free(void *p) { mv_port_aligned_free(p); }
