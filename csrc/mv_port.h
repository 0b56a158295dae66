/* mv_port.h - every compiler- and OS-specific spelling of the C core, each
 * behind one macro or inline function with a portable fallback.  Included by
 * mv_common.h, so every file has it; nothing else in csrc/ may use a GNU-only
 * builtin, attribute, inline assembly, pthreads or a POSIX-only call directly.
 *
 * Tested (Linux x86-64): gcc 12, clang 14 with libomp and clang without
 * OpenMP; aarch64 gcc 12 cross-built, run under qemu-user.  Written for but
 * NOT compiled here: Apple clang (macOS), MSVC (Windows).  README "Portability"
 * says the same.
 *
 *   MV_FORCE_INLINE          static inline, always inlined (kernel helpers)
 *   MV_LIKELY(x)             branch hint (no-op where unknown)
 *   MV_OPAQUE_PTR(p)         hides how pointer p was computed from the
 *                            optimiser (no instruction; no-op where unknown)
 *   mv_mul_ok / mv_add_ok    checked size_t arithmetic (mv_common.h), built on
 *                            MV_MUL_OVERFLOW / MV_ADD_OVERFLOW
 *   mv_port_aligned_malloc   aligned allocation (posix_memalign /
 *   mv_port_aligned_free       _aligned_malloc; never mixed with free())
 *   MV_CPU_RELAX()           spin-wait hint (pause / yield)
 *   mv_thread_yield()        give up the time slice (sched_yield / SwitchToThread)
 *   mv_monotonic_seconds()   monotonic clock for profiles (omp_get_wtime when
 *                            OpenMP is there, else clock_gettime / QPC)
 *   mv_mutex                 a non-recursive mutex: init / destroy / lock /
 *                            trylock (1 = acquired) / unlock
 *   MV_HAVE_FORK             fork() exists (pthread_atfork is used)
 *   mv_cpuid_count(l, s, r)  x86 CPUID leaf l, subleaf s into r[4] (eax..edx);
 *                            0 when the leaf is above the CPU's maximum
 *   mv_xgetbv0()             x86 XCR0 (which register states the OS saves)
 *
 * ISA files: gcc and clang compile simd_avx2.c / simd_avx512.c with target
 * pragmas (in those files); MSVC has no target pragma and gets /arch:AVX2 /
 * /arch:AVX512 for those two files only (setup.py, per-file flags). */
#ifndef MV_PORT_H
#define MV_PORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(_WIN32)
#  ifndef WIN32_LEAN_AND_MEAN
#    define WIN32_LEAN_AND_MEAN
#  endif
#  ifndef NOMINMAX
#    define NOMINMAX
#  endif
#  include <windows.h>
#  include <malloc.h>
#else
#  include <pthread.h>
#  include <sched.h>
#  include <time.h>
#endif

#ifdef _OPENMP
#  include <omp.h>
#endif

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__) || defined(_M_IX86)
#  define MV_ARCH_X86 1
#  if defined(_MSC_VER) && !defined(__clang__)
#    include <intrin.h>     /* __cpuidex, _xgetbv, _mm_pause */
#    include <immintrin.h>
#  else
#    include <cpuid.h>
#  endif
#endif

/* ---- compiler: attributes and builtins ------------------------------------ */
#if defined(__GNUC__) || defined(__clang__)
#  define MV_FORCE_INLINE static inline __attribute__((always_inline))
#  define MV_LIKELY(x) __builtin_expect(!!(x), 1)
#  define MV_OPAQUE_PTR(p) __asm__("" : "+r"(p))
#elif defined(_MSC_VER)
#  define MV_FORCE_INLINE static __forceinline
#  define MV_LIKELY(x) (x)
#  define MV_OPAQUE_PTR(p) ((void)0)
/* Stopgap for MSVC: the *.simd.inc files still spell
 * `static inline __attribute__((always_inline))`; with this they compile
 * (as plain `static inline`).  Replace those with MV_FORCE_INLINE, then drop
 * this line.  Unknown `#pragma GCC unroll` is warning C4068, off in setup.py. */
#  define __attribute__(x)
#else
#  define MV_FORCE_INLINE static inline
#  define MV_LIKELY(x) (x)
#  define MV_OPAQUE_PTR(p) ((void)0)
#endif

#if defined(__has_builtin)
#  if __has_builtin(__builtin_mul_overflow) && __has_builtin(__builtin_add_overflow)
#    define MV_HAVE_OVERFLOW_BUILTINS 1
#  endif
#elif defined(__GNUC__) && __GNUC__ >= 5
#  define MV_HAVE_OVERFLOW_BUILTINS 1
#endif

/* 1 when a * b (a + b) does not fit a size_t; *out is the product (sum) otherwise. */
#ifdef MV_HAVE_OVERFLOW_BUILTINS
#  define MV_MUL_OVERFLOW(a, b, out) __builtin_mul_overflow((a), (b), (out))
#  define MV_ADD_OVERFLOW(a, b, out) __builtin_add_overflow((a), (b), (out))
#else
static inline int mv_port_mul_overflow(size_t a, size_t b, size_t *out) {
    if (b != 0 && a > SIZE_MAX / b) return 1;
    *out = a * b;
    return 0;
}
static inline int mv_port_add_overflow(size_t a, size_t b, size_t *out) {
    if (a > SIZE_MAX - b) return 1;
    *out = a + b;
    return 0;
}
#  define MV_MUL_OVERFLOW(a, b, out) mv_port_mul_overflow((a), (b), (out))
#  define MV_ADD_OVERFLOW(a, b, out) mv_port_add_overflow((a), (b), (out))
#endif

/* ---- memory ---------------------------------------------------------------- */
/* bytes > 0, align a power of two >= sizeof(void *); NULL on failure. */
static inline void *mv_port_aligned_malloc(size_t align, size_t bytes) {
#if defined(_WIN32)
    return _aligned_malloc(bytes, align);
#else
    void *p = NULL;
    return posix_memalign(&p, align, bytes) == 0 ? p : NULL;
#endif
}
static inline void mv_port_aligned_free(void *p) {
#if defined(_WIN32)
    _aligned_free(p);
#else
    free(p);
#endif
}

/* ---- threads and time ------------------------------------------------------ */
#if defined(MV_ARCH_X86) && defined(_MSC_VER) && !defined(__clang__)
#  define MV_CPU_RELAX() _mm_pause()
#elif defined(MV_ARCH_X86)
#  define MV_CPU_RELAX() __builtin_ia32_pause()
#elif defined(_MSC_VER) && (defined(_M_ARM64) || defined(_M_ARM))
#  define MV_CPU_RELAX() __yield()
#elif defined(__aarch64__) || defined(__arm__)
#  define MV_CPU_RELAX() __asm__ __volatile__("yield")
#else
#  define MV_CPU_RELAX() ((void)0)
#endif

static inline void mv_thread_yield(void) {
#if defined(_WIN32)
    SwitchToThread();
#else
    sched_yield();
#endif
}

static inline double mv_monotonic_seconds(void) {
#if defined(_OPENMP)
    return omp_get_wtime();
#elif defined(_WIN32)
    LARGE_INTEGER f, c;
    QueryPerformanceFrequency(&f);
    QueryPerformanceCounter(&c);
    return (double)c.QuadPart / (double)f.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
#endif
}

#if defined(_WIN32)
typedef SRWLOCK mv_mutex;        /* released only by the thread that took it, as here */
static inline int mv_mutex_init(mv_mutex *m) { InitializeSRWLock(m); return 0; }
static inline void mv_mutex_destroy(mv_mutex *m) { (void)m; }
static inline void mv_mutex_lock(mv_mutex *m) { AcquireSRWLockExclusive(m); }
static inline int mv_mutex_trylock(mv_mutex *m) { return TryAcquireSRWLockExclusive(m) != 0; }
static inline void mv_mutex_unlock(mv_mutex *m) { ReleaseSRWLockExclusive(m); }
#else
typedef pthread_mutex_t mv_mutex;
static inline int mv_mutex_init(mv_mutex *m) { return pthread_mutex_init(m, NULL); }
static inline void mv_mutex_destroy(mv_mutex *m) { pthread_mutex_destroy(m); }
static inline void mv_mutex_lock(mv_mutex *m) { pthread_mutex_lock(m); }
static inline int mv_mutex_trylock(mv_mutex *m) { return pthread_mutex_trylock(m) == 0; }
static inline void mv_mutex_unlock(mv_mutex *m) { pthread_mutex_unlock(m); }
#  define MV_HAVE_FORK 1
#endif

/* ---- x86 feature detection ------------------------------------------------- */
#ifdef MV_ARCH_X86
static inline int mv_cpuid_count(unsigned leaf, unsigned sub, unsigned r[4]) {
#  if defined(_MSC_VER) && !defined(__clang__)
    int v[4];
    __cpuid(v, (int)(leaf & 0x80000000u));
    if ((unsigned)v[0] < leaf) return 0;
    __cpuidex(v, (int)leaf, (int)sub);
    for (int i = 0; i < 4; i++) r[i] = (unsigned)v[i];
    return 1;
#  else
    return __get_cpuid_count(leaf, sub, &r[0], &r[1], &r[2], &r[3]);
#  endif
}

/* Only call after CPUID.1:ECX.OSXSAVE[bit 27] says XGETBV exists. */
static inline unsigned long long mv_xgetbv0(void) {
#  if defined(_MSC_VER) && !defined(__clang__)
    return _xgetbv(0);
#  else
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
#  endif
}
#endif

#endif /* MV_PORT_H */
