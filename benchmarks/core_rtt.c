/* Cache-line round trip between two CPUs of this machine, in nanoseconds.
 *
 * Build (bench_compare.py does this for you):
 *     cc -O2 -pthread benchmarks/core_rtt.c -o core_rtt
 * Run:
 *     ./core_rtt [ROUND_TRIPS] [REPS]
 *
 * Two threads, pinned to the first two CPUs of the process's affinity mask
 * (Linux; elsewhere left where the OS puts them), pass one cache line back
 * and forth: thread A writes 2i+1 and waits for 2i+2, thread B waits for
 * 2i+1 and writes 2i+2, timed from when B is running on its CPU.  The
 * median time per round trip over REPS repetitions is printed as one line
 * of JSON on stdout:
 *     {"rtt_ns": 64.1, "min_ns": ..., "max_ns": ..., "cpus": [0, 1], ...}
 *
 * Why: on a 2-vCPU VM the hypervisor may run the two vCPUs on cores of one
 * die (shared L3; round trip ~50-80 ns on AMD Zen 4) or of two dies
 * (~300-350 ns), and move them between the two for minutes at a time.
 * Two-thread inference shares data between the cores at every layer, so
 * its speed follows that placement; one-thread runs do not notice it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* the bounced line holds nothing else (the loop bound in the same line
 * would be reloaded after every acquire and double the traffic) */
static struct { _Alignas(64) atomic_long v; char pad[64 - sizeof(atomic_long)]; } line;
static long trips = 20000;
static int cpu_b = -1;

static void pin(int cpu) {
#ifdef __linux__
    if (cpu < 0) return;
    cpu_set_t s;
    CPU_ZERO(&s);
    CPU_SET(cpu, &s);
    pthread_setaffinity_np(pthread_self(), sizeof s, &s);
#else
    (void)cpu;
#endif
}

static void *partner(void *arg) {
    (void)arg;
    pin(cpu_b);
    atomic_store_explicit(&line.v, -1, memory_order_release);   /* ready, on its CPU */
    const long n = trips;
    for (long i = 0; i < n; i++) {
        while (atomic_load_explicit(&line.v, memory_order_acquire) != 2 * i + 1) {}
        atomic_store_explicit(&line.v, 2 * i + 2, memory_order_release);
    }
    return NULL;
}

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    int reps = 5, cpu_a = -1;
    if (argc > 1) trips = atol(argv[1]);
    if (argc > 2) reps = atoi(argv[2]);
    if (trips < 1 || reps < 1 || reps > 1000) {
        fprintf(stderr, "usage: core_rtt [ROUND_TRIPS >= 1] [REPS 1..1000]\n");
        return 2;
    }
#ifdef __linux__
    cpu_set_t mask;
    if (sched_getaffinity(0, sizeof mask, &mask) == 0)
        for (int c = 0; c < CPU_SETSIZE && cpu_b < 0; c++)
            if (CPU_ISSET(c, &mask)) {
                if (cpu_a < 0) cpu_a = c;
                else cpu_b = c;
            }
    if (cpu_b < 0) {
        fprintf(stderr, "core_rtt: fewer than two CPUs usable\n");
        return 1;
    }
#endif
    pin(cpu_a);
    double *ns = malloc((size_t)reps * sizeof *ns);
    if (!ns) return 1;
    for (int r = 0; r < reps; r++) {
        pthread_t t;
        atomic_store(&line.v, 0);
        if (pthread_create(&t, NULL, partner, NULL) != 0) return 1;
        /* the new thread starts on this thread's CPU: let it run and move first */
        while (atomic_load_explicit(&line.v, memory_order_acquire) != -1) sched_yield();
        const long n = trips;
        double t0 = now();
        for (long i = 0; i < n; i++) {
            atomic_store_explicit(&line.v, 2 * i + 1, memory_order_release);
            while (atomic_load_explicit(&line.v, memory_order_acquire) != 2 * i + 2) {}
        }
        ns[r] = (now() - t0) * 1e9 / n;
        pthread_join(t, NULL);
    }
    qsort(ns, (size_t)reps, sizeof *ns, cmp);
    printf("{\"rtt_ns\": %.1f, \"min_ns\": %.1f, \"max_ns\": %.1f, \"cpus\": [%d, %d], \"trips\": %ld, \"reps\": %d}\n",
           ns[reps / 2], ns[0], ns[reps - 1], cpu_a, cpu_b, trips, reps);
    free(ns);
    return 0;
}
