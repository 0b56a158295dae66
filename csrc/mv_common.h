/* mv_common.h - status codes, ISA identifiers, work partitioning and checked
 * arithmetic shared by every file of the C core.  No Python here. */
#ifndef MV_COMMON_H
#define MV_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include "mv_port.h"

/* Every entry point that can fail returns one of these; the binding maps them
 * to Python exceptions (ValueError / MemoryError / RuntimeError). */
typedef enum {
    MV_OK = 0,
    MV_ERR_ARG = 1,      /* invalid argument: shape, size, flag */
    MV_ERR_NOMEM = 2,    /* allocation failed or size overflowed */
    MV_ERR_UNSUPPORTED = 3,
    MV_ERR_INTERNAL = 4,
} mv_status;

/* Instruction-set paths.  MV_ISA_REF is the plain scalar reference. */
typedef enum {
    MV_ISA_REF = 0,
    MV_ISA_AVX2 = 1,     /* AVX2 + FMA3 */
    MV_ISA_AVX512 = 2,   /* AVX-512 F/BW/DQ/VL */
    MV_ISA_NEON = 3,     /* AArch64 Advanced SIMD (every AArch64 CPU) */
    MV_ISA_COUNT = 4,
} mv_isa;

/* Activation applied in kernel epilogues. */
typedef enum {
    MV_ACT_NONE = 0,
    MV_ACT_SILU = 1,
    MV_ACT_RELU = 2,
} mv_act;

/* Static split of [0, total) among nth workers: worker tid gets [*b, *e).
 * The split depends only on (total, tid, nth); results never depend on it
 * because every output element is computed by exactly one worker in a fixed
 * order. */
static inline void mv_partition(ptrdiff_t total, int tid, int nth,
                                ptrdiff_t *b, ptrdiff_t *e) {
    ptrdiff_t q = total / nth, r = total % nth;
    ptrdiff_t lo = (ptrdiff_t)tid * q + (tid < r ? tid : r);
    *b = lo;
    *e = lo + q + (tid < r ? 1 : 0);
}

/* Checked size arithmetic: return 0 on overflow. */
static inline int mv_mul_ok(size_t a, size_t b, size_t *out) {
    return !MV_MUL_OVERFLOW(a, b, out);
}
static inline int mv_add_ok(size_t a, size_t b, size_t *out) {
    return !MV_ADD_OVERFLOW(a, b, out);
}

#define MV_ALIGN 64
#define MV_ROUND_UP(x, m) ((((x) + (m) - 1) / (m)) * (m))
#define MV_MIN(a, b) ((a) < (b) ? (a) : (b))
#define MV_MAX(a, b) ((a) > (b) ? (a) : (b))

void *mv_aligned_alloc(size_t bytes);
void mv_aligned_free(void *p);

#endif /* MV_COMMON_H */
