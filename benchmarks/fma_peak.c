/* fp32 FMA peak of this machine, in GFLOP/s, for a given thread count.
 *
 * Build (bench_compare.py does this for you):
 *     cc -O2 -mavx512f -mfma -fopenmp benchmarks/fma_peak.c -o fma_peak      (x86-64, AVX-512)
 *     cc -O2 -mavx2 -mfma -fopenmp benchmarks/fma_peak.c -o fma_peak         (x86-64, AVX2)
 *     cc -O2 -fopenmp benchmarks/fma_peak.c -o fma_peak                      (aarch64: NEON; other: scalar)
 * Without OpenMP (no -fopenmp) it still builds and measures one thread only.
 * Run:
 *     ./fma_peak THREADS [REPS] [ITERS]
 *
 * Every thread runs ITERS iterations of CHAINS independent FMA chains on vector
 * registers (acc = acc * b + c).  The chains must cover FMA latency x FMA pipes:
 * 12 for AVX-512 / AVX2 (4-cycle latency, two pipes; AVX2 has 16 ymm registers,
 * 12 chains + 2 operands fit), 20 for NEON (32 q registers; Apple and Neoverse V
 * cores have four 128-bit FMA pipes with 3-4 cycles latency, so 12-16 would not
 * be enough there).  The threads start together after a barrier; the time of one
 * repetition is the slowest thread's.  The best of REPS repetitions is printed
 * as one line of JSON on stdout:
 *     {"threads": 2, "isa": "avx512", "gflops": 431.2, "best_s": ..., "reps": 7, ...}
 * FLOPs counted: 2 per lane per FMA.
 */
#include <stdio.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#else
#include <time.h>
#endif

#if defined(__x86_64__) || defined(__i386__) || defined(_M_X64)
#include <immintrin.h>
#if defined(__AVX512F__)
typedef __m512 vec;
#define VLEN 16
#define ISA "avx512"
#define VSET1(x) _mm512_set1_ps(x)
#define VFMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define VADD(a, b) _mm512_add_ps(a, b)
static float vsum(vec v) { return _mm512_reduce_add_ps(v); }
#elif defined(__AVX2__) && defined(__FMA__)
typedef __m256 vec;
#define VLEN 8
#define ISA "avx2"
#define VSET1(x) _mm256_set1_ps(x)
#define VFMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define VADD(a, b) _mm256_add_ps(a, b)
static float vsum(vec v) {
    float t[8];
    _mm256_storeu_ps(t, v);
    return t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
}
#else
#error "on x86-64 build with -mavx512f -mfma or -mavx2 -mfma"
#endif
#define CHAINS 12

#elif defined(__aarch64__) || defined(_M_ARM64)
#include <arm_neon.h> /* NEON (ASIMD) is part of the aarch64 base ISA: no flags needed */
typedef float32x4_t vec;
#define VLEN 4
#define ISA "neon"
#define VSET1(x) vdupq_n_f32(x)
#define VFMA(a, b, c) vfmaq_f32(c, a, b) /* c + a * b, fused */
#define VADD(a, b) vaddq_f32(a, b)
static float vsum(vec v) { return vaddvq_f32(v); }
#define CHAINS 20

#else
/* any other CPU: plain scalar floats (the compiler may or may not fuse them) */
typedef float vec;
#define VLEN 1
#define ISA "scalar"
#define VSET1(x) (x)
#define VFMA(a, b, c) ((a) * (b) + (c))
#define VADD(a, b) ((a) + (b))
static float vsum(vec v) { return v; }
#define CHAINS 12
#endif

static volatile float g_sink;

/* One thread's work: iters * CHAINS FMAs on VLEN lanes.  b and c come from
 * volatile memory so the compiler cannot fold the chains; the chains are
 * written out one by one (not an array) so that they stay in registers. */
#define CH(k) vec a##k = VSET1(0.05f * (k))
#define UP(k) a##k = VFMA(a##k, b, c)
#define SUM(k) s = VADD(s, a##k)
#if CHAINS == 12
#define ALL(M) M(0); M(1); M(2); M(3); M(4); M(5); M(6); M(7); M(8); M(9); M(10); M(11)
#elif CHAINS == 20
#define ALL(M) M(0); M(1); M(2); M(3); M(4); M(5); M(6); M(7); M(8); M(9); M(10); M(11); \
               M(12); M(13); M(14); M(15); M(16); M(17); M(18); M(19)
#endif

static float fma_loop(long iters, float bv, float cv) {
    vec b = VSET1(bv), c = VSET1(cv);
    ALL(CH);
    for (long i = 0; i < iters; i++) {
        ALL(UP);
    }
    vec s = VSET1(0.0f);
    ALL(SUM);
    return vsum(s);
}

static double now_s(void) {
#ifdef _OPENMP
    return omp_get_wtime();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
#endif
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    long iters = argc > 3 ? atol(argv[3]) : 100000000L; /* ~0.3-0.6 s per rep on one core */
    if (threads < 1) threads = 1;
    if (reps < 1) reps = 1;
    volatile float bv = 0.999999f, cv = 1e-7f;
#ifdef _OPENMP
    omp_set_dynamic(0);
    omp_set_num_threads(threads);
    const char *openmp = "yes";
#else
    if (threads > 1) {
        fprintf(stderr, "fma_peak: built without OpenMP, only 1 thread can be measured\n");
        return 2;
    }
    const char *openmp = "no";
#endif

    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t_slowest = 0.0;
#ifdef _OPENMP
#pragma omp parallel num_threads(threads) reduction(max : t_slowest)
#endif
        {
            float b = bv, c = cv;
            fma_loop(iters / 100, b, c); /* warm the core up (clock ramp, AVX-512 licence) */
#ifdef _OPENMP
#pragma omp barrier
#endif
            double t0 = now_s();
            float s = fma_loop(iters, b, c);
            double t1 = now_s();
            g_sink = s;
            t_slowest = t1 - t0;
        }
        if (t_slowest < best) best = t_slowest;
    }
    double flops = 2.0 * VLEN * CHAINS * (double)iters * threads;
    printf("{\"threads\": %d, \"isa\": \"%s\", \"gflops\": %.2f, \"best_s\": %.6f, \"reps\": %d, \"iters\": %ld, "
           "\"chains\": %d, \"lanes\": %d, \"openmp\": \"%s\"}\n",
           threads, ISA, flops / best / 1e9, best, reps, iters, CHAINS, VLEN, openmp);
    return 0;
}
