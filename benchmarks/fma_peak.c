/* fp32 FMA peak of this machine, in GFLOP/s, for a given thread count.
 *
 * Build (bench_compare.py does this for you):
 *     cc -O2 -mavx512f -mfma -fopenmp benchmarks/fma_peak.c -o fma_peak      (AVX-512)
 *     cc -O2 -mavx2 -mfma -fopenmp benchmarks/fma_peak.c -o fma_peak         (AVX2 fallback)
 * Run:
 *     ./fma_peak THREADS [REPS] [ITERS]
 *
 * Every thread runs ITERS iterations of 12 independent FMA chains on vector
 * registers (acc = acc * b + c; 12 chains hide the 4-cycle FMA latency on two
 * pipes).  The threads start together after a barrier; the time of one
 * repetition is the slowest thread's.  The best of REPS repetitions is printed
 * as one line of JSON on stdout:
 *     {"threads": 2, "isa": "avx512", "gflops": 431.2, "best_s": ..., "reps": 7}
 * FLOPs counted: 2 per lane per FMA.
 */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

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
#error "needs -mavx512f -mfma or -mavx2 -mfma"
#endif

#define CHAINS 12

static volatile float g_sink;

/* One thread's work: iters * CHAINS FMAs on VLEN lanes.  b and c come from
 * volatile memory so the compiler cannot fold the chains. */
static float fma_loop(long iters, float bv, float cv) {
    vec b = VSET1(bv), c = VSET1(cv);
    vec a0 = VSET1(0.0f), a1 = VSET1(0.1f), a2 = VSET1(0.2f), a3 = VSET1(0.3f);
    vec a4 = VSET1(0.4f), a5 = VSET1(0.5f), a6 = VSET1(0.6f), a7 = VSET1(0.7f);
    vec a8 = VSET1(0.8f), a9 = VSET1(0.9f), a10 = VSET1(1.0f), a11 = VSET1(1.1f);
    for (long i = 0; i < iters; i++) {
        a0 = VFMA(a0, b, c); a1 = VFMA(a1, b, c); a2 = VFMA(a2, b, c);
        a3 = VFMA(a3, b, c); a4 = VFMA(a4, b, c); a5 = VFMA(a5, b, c);
        a6 = VFMA(a6, b, c); a7 = VFMA(a7, b, c); a8 = VFMA(a8, b, c);
        a9 = VFMA(a9, b, c); a10 = VFMA(a10, b, c); a11 = VFMA(a11, b, c);
    }
    vec s = VADD(VADD(VADD(a0, a1), VADD(a2, a3)), VADD(VADD(a4, a5), VADD(a6, a7)));
    s = VADD(s, VADD(VADD(a8, a9), VADD(a10, a11)));
    return vsum(s);
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 1;
    int reps = argc > 2 ? atoi(argv[2]) : 7;
    long iters = argc > 3 ? atol(argv[3]) : 100000000L; /* ~0.3-0.6 s per rep on one core */
    if (threads < 1) threads = 1;
    if (reps < 1) reps = 1;
    volatile float bv = 0.999999f, cv = 1e-7f;
    omp_set_dynamic(0);
    omp_set_num_threads(threads);

    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t_slowest = 0.0;
#pragma omp parallel num_threads(threads) reduction(max : t_slowest)
        {
            float b = bv, c = cv;
            fma_loop(iters / 100, b, c); /* warm the core up (clock ramp, AVX-512 licence) */
#pragma omp barrier
            double t0 = omp_get_wtime();
            float s = fma_loop(iters, b, c);
            double t1 = omp_get_wtime();
            g_sink = s;
            t_slowest = t1 - t0;
        }
        if (t_slowest < best) best = t_slowest;
    }
    double flops = 2.0 * VLEN * CHAINS * (double)iters * threads;
    printf("{\"threads\": %d, \"isa\": \"%s\", \"gflops\": %.2f, \"best_s\": %.6f, \"reps\": %d, \"iters\": %ld}\n",
           threads, ISA, flops / best / 1e9, best, reps, iters);
    return 0;
}
