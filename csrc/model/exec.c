/* exec.c - the executor: one OpenMP parallel region per forward pass,
 * nodes cut into chunks that workers claim (see the comment above
 * mv_plan_run_timed), and the throughput mode's whole-image loop. */
#include <stdlib.h>
#include <string.h>
#include <stdatomic.h>
#include "graph_internal.h"    /* mv_port.h through mv_common.h: omp.h when _OPENMP */


static void run_node(const mv_graph *g, const mv_plan *p, int i,
                     const mv_kernel_table *kt, int tid, int nth, int worker) {
    const mv_node *n = &g->nodes[i];
    const mv_tensor_info *x = &p->t[n->in[0]], *o = &p->t[i + 1];
    float *A = p->arena;
    const float *X = A + x->offset;
    float *Y = A + o->offset;
    float *scratch = A + p->scratch_offset + (size_t)worker * p->scratch_per_worker;  /* this worker's */
    if (p->mode[i] == MV_MODE_HEAD) {      /* nodes i, i+1, i+2 as one block */
        const mv_node *d = &g->nodes[i + 1], *q = &g->nodes[i + 2];
        const mv_tensor_info *e = &p->t[i + 1], *y = &p->t[i + 3];
        mv_invres_args a = {
            .B = x->B, .H = x->H, .W = x->W, .Cin = x->C, .X = X,
            .Ce = e->C, .We = n->w, .be = n->bias, .act_e = n->p.conv.act,
            .OH = y->H, .OW = y->W, .stride = d->p.dwconv.stride, .pad = d->p.dwconv.pad,
            .dil = d->p.dwconv.dilation, .Wdw = d->w, .bdw = d->bias, .act_dw = d->p.dwconv.act,
            .Cout = y->C, .Wp = q->w, .bp = q->bias, .has_res = q->p.conv.residual,
            .Y = A + y->offset, .rows = mv_invres_group_rows(y->H, y->W), .scratch = scratch};
        mv_invres_nhwc_f32(&a, kt, tid, nth);
        return;
    }
    switch (n->op) {
    case MV_OP_CONV: {
        const mv_conv_params *c = &n->p.conv;
        const mv_tensor_info *x2 = c->concat ? &p->t[n->in[1]] : NULL;
        const mv_tensor_info *r = c->residual ? &p->t[n->in[n->nin - 1]] : NULL;
        if (mv_node_is_pointwise(n)) {
            mv_gemm_args a = {.M = (ptrdiff_t)x->B * x->H * x->W, .N = n->cout, .K = x->C,
                              .A = X, .lda = x->C, .Wp = n->w, .bias = n->bias,
                              .R = r ? A + r->offset : NULL, .ldr = n->cout,
                              .C = Y, .ldc = n->cout, .act = c->act};
            kt->gemm(&a, tid, nth);
        } else {
            mv_conv2d_args a = {.B = x->B, .H = x->H, .W = x->W,
                                .C1 = x->C, .X1 = X, .ldx1 = x->C,
                                .C2 = x2 ? x2->C : 0, .X2 = x2 ? A + x2->offset : NULL, .ldx2 = x2 ? x2->C : 0,
                                .OH = o->H, .OW = o->W, .Cout = n->cout,
                                .kh = c->kh, .kw = c->kw, .stride = c->stride, .pad = c->pad, .dil = c->dilation,
                                .Wp = n->w, .bias = n->bias, .R = r ? A + r->offset : NULL, .ldr = n->cout,
                                .Y = Y, .ldy = n->cout, .act = c->act, .zero = g->zero, .scratch = scratch};
            if (n->w2 && p->opts.winograd) {
                a.wtile = mv_conv3x3_wino_tile(x->H, x->W);
                a.Wp = a.wtile == 4 ? n->w4 : n->w2;
                kt->conv3x3_wino(&a, tid, nth);
            } else {
                kt->conv2d(&a, tid, nth);
            }
        }
        break;
    }
    case MV_OP_DWCONV: {
        const mv_dwconv_params *d = &n->p.dwconv;
        mv_dwconv2d_args a = {.B = x->B, .H = x->H, .W = x->W, .C = x->C, .X = X, .OH = o->H, .OW = o->W,
                              .stride = d->stride, .pad = d->pad, .dil = d->dilation,
                              .Wt = n->w, .bias = n->bias, .Y = Y, .act = d->act};
        kt->dwconv2d(&a, tid, nth);
        break;
    }
    case MV_OP_LAYERNORM:
        kt->layernorm(X, (ptrdiff_t)x->B * x->H * x->W, x->C, x->C, n->gamma, n->bias,
                                   n->p.norm.eps, Y, o->C, tid, nth);
        break;
    case MV_OP_GROUPNORM1:
        kt->groupnorm1(X, x->B, (ptrdiff_t)x->H * x->W, x->C, n->gamma, n->bias, n->p.norm.eps, Y, tid, nth);
        break;
    case MV_OP_ATTENTION: {
        const mv_attention_params *at = &n->p.attention;
        mv_attention_args a = {.B = x->B, .H = x->H, .W = x->W, .ph = at->patch_h, .pw = at->patch_w,
                               .D = o->C, .heads = at->heads, .scale = at->scale,
                               .QKV = X, .ldqkv = x->C, .O = Y, .ldo = o->C, .scratch = scratch};
        kt->attention(&a, tid, nth);
        break;
    }
    case MV_OP_RESIZE:
        if (o->root != i + 1) break;     /* identity alias */
        mv_resize_bilinear_nhwc_f32__ref(X, x->B, x->H, x->W, x->C, Y, o->H, o->W, n->p.resize.align_corners, tid, nth);
        break;
    case MV_OP_SEP_ATTENTION: {
        mv_sep_attention_args a = {.B = x->B, .H = x->H, .W = x->W, .ph = n->p.sep_attention.patch_h,
                                   .pw = n->p.sep_attention.patch_w, .D = o->C, .QKV = X, .ldqkv = x->C,
                                   .O = Y, .ldo = o->C, .scratch = scratch};
        kt->sep_attention(&a, tid, nth);
        break;
    }
    case MV_OP_CROP_PAD:
        if (o->root != i + 1) break;     /* identity alias */
        mv_crop_pad_nhwc_f32__ref(X, x->B, x->H, x->W, x->C, Y, o->H, o->W, tid, nth);
        break;
    case MV_OP_GLOBAL_AVG_POOL:
        mv_global_avg_pool_nhwc_f32__ref(X, x->B, (ptrdiff_t)x->H * x->W, x->C, x->C, Y, tid, nth);
        break;
    case MV_OP_ADD:
        mv_add_f32__ref(X, A + p->t[n->in[1]].offset, (ptrdiff_t)x->B * x->H * x->W * x->C, Y, tid, nth);
        break;
    case MV_OP_ACT:
        kt->act(X, (ptrdiff_t)x->B * x->H * x->W * x->C, n->p.act.act, Y, tid, nth);
        break;
    case MV_OP_CONCAT:
        mv_concat_nhwc_f32__ref(X, x->C, A + p->t[n->in[1]].offset, p->t[n->in[1]].C,
                                (ptrdiff_t)x->B * x->H * x->W, Y, tid, nth);
        break;
    default:
        break;
    }
}

static void emit_outputs(const mv_plan *p, const mv_outputs *out, int id,
                         int tid, int nth) {
    for (int k = 0; k < out->n; k++)
        if (out->ids[k] == id) {
            const mv_tensor_info *t = &p->t[id];
            mv_nhwc_to_nchw_f32__ref(p->arena + t->offset, t->B, t->C, t->H, t->W, t->C, out->dst[k], tid, nth);
        }
}

static int wants(const mv_outputs *out, int id) {
    for (int k = 0; k < out->n; k++) if (out->ids[k] == id) return 1;
    return 0;
}

static double mv_now(void) { return mv_monotonic_seconds(); }

mv_status mv_plan_run(mv_plan *p, const mv_graph *g, const float *x,
                      const mv_outputs *out, int nth, mv_isa isa) {
    return mv_plan_run_timed(p, g, x, out, nth, isa, NULL);
}

/* ---- executor ---------------------------------------------------------------
 * A run is a list of phases (input layout change, each node, each output
 * copy).  Phase k is cut into nchunk[k] chunks; each worker owns a
 * contiguous share of them (mv_partition) and claims its own first, in
 * order, then takes what is left of the others' from their ends; it starts
 * phase k only when every chunk of phase k-1 is done.  Owning the same
 * share in every phase keeps a row-split chain of ops on the worker that
 * wrote the rows (on VMs whose two vCPUs sit on different dies a cache
 * line from the other core costs ~5x: MobileViT-XS, 2 threads, AVX2, ran
 * 25 % slower there with chunks claimed first come, first served).  A
 * worker that the OS does not schedule never holds the others up unless it
 * is inside a chunk: on an oversubscribed machine the network degrades to
 * fewer threads instead of stalling at every node (a plain barrier costs a
 * scheduler time slice per node there).  Chunk boundaries only decide who
 * computes what; every kernel computes each output element the same way
 * whatever its share, so results are bit-identical for
 * any thread count and any interleaving. */

enum { PH_INPUT = 0, PH_NODE = 1, PH_EMIT = 2 };

typedef struct {
    int kind, node;        /* node index for PH_NODE / PH_EMIT (tensor node+1) */
    int nchunk;
    atomic_int done;
    atomic_int *claim;     /* [nchunk]: 1 once a worker has taken the chunk */
} mv_phase;

typedef struct {
    mv_plan *p;
    const mv_graph *g;
    const float *x;
    const mv_outputs *out;
    const mv_kernel_table *kt;
    mv_phase *ph;
    int nph, nth;
    double *times;         /* per node completion stamps, or NULL */
    struct worker_acc { double busy, wait, chunks, end; } *workers;   /* per worker, or NULL */
} mv_run;

static inline void mv_cpu_relax(void) { MV_CPU_RELAX(); }

static void run_phase(mv_run *r, int k, int chunk, int worker) {
    mv_phase *ph = &r->ph[k];
    switch (ph->kind) {
    case PH_INPUT:
        mv_nchw_to_nhwc_f32__ref(r->x, r->p->B, r->g->in_channels, r->p->H, r->p->W,
                                 r->p->arena + r->p->t[0].offset, chunk, ph->nchunk);
        break;
    case PH_NODE:
        run_node(r->g, r->p, ph->node, r->kt, chunk, ph->nchunk, worker);
        break;
    case PH_EMIT:
        emit_outputs(r->p, r->out, ph->node + 1, chunk, ph->nchunk);
        break;
    }
}

static void run_worker(mv_run *r, int worker) {
    struct worker_acc *ws = r->workers ? &r->workers[worker] : NULL;
    double t = ws ? mv_now() : 0.0;
    for (int k = 0; k < r->nph; k++) {
        if (k > 0) {
            mv_phase *prev = &r->ph[k - 1];
            for (int spins = 0; atomic_load_explicit(&prev->done, memory_order_acquire) < prev->nchunk; spins++) {
                if (spins < 4000) mv_cpu_relax();
                else mv_thread_yield();
            }
        }
        if (ws) { double now = mv_now(); ws->wait += now - t; t = now; }
        mv_phase *ph = &r->ph[k];
        ptrdiff_t c0, c1;
        for (int d = 0; d < r->nth; d++) {     /* own share forward, then the others' backward */
            int owner = (worker + d) % r->nth;
            mv_partition(ph->nchunk, owner, r->nth, &c0, &c1);
            for (ptrdiff_t i = c0; i < c1; i++) {
                int c = (int)(d == 0 ? i : c1 - 1 - (i - c0));
                if (atomic_load_explicit(&ph->claim[c], memory_order_relaxed) ||
                    atomic_exchange_explicit(&ph->claim[c], 1, memory_order_relaxed))
                    continue;
                run_phase(r, k, c, worker);
                if (atomic_fetch_add_explicit(&ph->done, 1, memory_order_acq_rel) + 1 == ph->nchunk &&
                    r->times && ph->kind == PH_NODE)
                    r->times[ph->node] = mv_now();
                if (ws) { double now = mv_now(); ws->busy += now - t; ws->chunks += 1; t = now; }
            }
        }
    }
    if (ws) ws->end = t;
}

mv_status mv_plan_run_timed(mv_plan *p, const mv_graph *g, const float *x,
                            const mv_outputs *out, int nth_asked, mv_isa isa,
                            const mv_profile *prof) {
    int nth = nth_asked;
    if (nth > p->nth) nth = p->nth;
    if (nth < 1) nth = 1;
    double *times = prof ? prof->node_seconds : NULL;
    struct worker_acc *workers = NULL;
    if (prof && prof->worker && !(workers = calloc((size_t)nth, sizeof *workers))) return MV_ERR_NOMEM;
    int nph = 1 + g->nnodes;
    for (int i = 0; i < g->nnodes; i++) nph += wants(out, i + 1);
    mv_phase *ph = malloc((size_t)nph * sizeof(mv_phase));
    if (!ph) { free(workers); return MV_ERR_NOMEM; }
    /* two chunks per worker balance uneven shares (a preempted worker's
     * second chunk is taken by the others); one when alone.  Measured on S,
     * 2 threads, batch 1: 4 per worker was 3-8 % slower on AVX2 and AVX-512. */
    int chunks = nth > 1 ? 2 * nth : 1;
    int k = 0;
    ph[k].kind = PH_INPUT; ph[k].node = -1; ph[k].nchunk = chunks; k++;
    for (int i = 0; i < g->nnodes; i++) {
        int skip = p->mode[i] == MV_MODE_INNER || p->mode[i] == MV_MODE_TAIL;   /* run by the head */
        if (!skip) {
            ph[k].kind = PH_NODE; ph[k].node = i; ph[k].nchunk = chunks;
            if (p->mode[i] == MV_MODE_HEAD) {
                /* every chunk re-expands the 2 (stride 1) input rows above its
                 * first output row, and a worker's ring carries nothing from one
                 * chunk to the next: one contiguous share per worker (S, 2 threads,
                 * AVX2: 2.6 -> 2.1 ms on the 128x128 blocks, 8 % of the whole
                 * pass, against 8 chunks of 16 rows), at least two rows each, so
                 * a small map still splits (an 8x8 block on one worker ran at
                 * 1.0x with 2 threads) */
                const mv_tensor_info *y = &p->t[i + 3];
                ptrdiff_t c = (ptrdiff_t)y->B * y->H / 2;
                ph[k].nchunk = (int)MV_MAX(1, MV_MIN((ptrdiff_t)nth, c));
            }
            /* a Winograd conv sizes its tile blocks and output-channel slices
             * from the chunk count, and a slice recomputes its block's input
             * transform: one chunk per worker (S, 2 threads, AVX2: the 32x32
             * and 16x16 convs ran at 1.2-1.5x of one thread with 4 chunks,
             * 1.4-1.9x with 2) */
            if (g->nodes[i].w2 && p->opts.winograd) ph[k].nchunk = nth;
            k++;
        }
        if (wants(out, i + 1)) { ph[k].kind = PH_EMIT; ph[k].node = i; ph[k].nchunk = chunks; k++; }
    }
    nph = k;
    size_t nclaim = 0;
    for (k = 0; k < nph; k++) nclaim += (size_t)ph[k].nchunk;
    atomic_int *claim = malloc(nclaim * sizeof *claim);
    if (!claim) { free(ph); free(workers); return MV_ERR_NOMEM; }
    nclaim = 0;
    for (k = 0; k < nph; k++) {
        atomic_init(&ph[k].done, 0);
        ph[k].claim = claim + nclaim;
        for (int c = 0; c < ph[k].nchunk; c++) atomic_init(&ph[k].claim[c], 0);
        nclaim += (size_t)ph[k].nchunk;
    }
    mv_run r = {p, g, x, out, mv_kernels(isa), ph, nph, nth, times, workers};
    double t0 = mv_now();
#ifdef _OPENMP
    if (nth > 1) {
#pragma omp parallel num_threads(nth)
        run_worker(&r, omp_get_thread_num());
    } else
#endif
        run_worker(&r, 0);
    double t_end = mv_now();
    if (workers) {   /* a worker's time after its last chunk is waiting too */
        for (int w = 0; w < nth_asked; w++) prof->worker[w] = (mv_worker_stats){0};
        for (int w = 0; w < nth; w++) {
            double end = workers[w].end > 0 ? workers[w].end : t0;
            prof->worker[w] = (mv_worker_stats){.busy = workers[w].busy,
                                                .wait = workers[w].wait + (t_end - end),
                                                .chunks = workers[w].chunks};
        }
        free(workers);
    }
    if (times)       /* completion stamps -> per-node durations */
        for (int i = 0; i < g->nnodes; i++) {
            double t1 = (p->mode[i] == MV_MODE_INNER || p->mode[i] == MV_MODE_TAIL) ? t0 : times[i];
            times[i] = t1 - t0;
            t0 = t1;
        }
    free(claim);
    free(ph);
    return MV_OK;
}

size_t mv_plan_image_floats(const mv_plan *p, int id) {
    const mv_tensor_info *t = &p->t[id];
    return (size_t)t->C * t->H * t->W;
}

mv_status mv_plan_run_images(mv_plan *plans, int nplans, const mv_graph *g,
                             const float *x, int nimg, const mv_outputs *out,
                             mv_isa isa) {
    size_t x_img = (size_t)g->in_channels * plans[0].H * plans[0].W;
    size_t o_img[64];
    if (out->n > 64) return MV_ERR_ARG;
    for (int k = 0; k < out->n; k++) o_img[k] = mv_plan_image_floats(&plans[0], out->ids[k]);
    atomic_int next;
    atomic_init(&next, 0);
    atomic_int failed;
    atomic_init(&failed, 0);
#ifdef _OPENMP
#pragma omp parallel num_threads(nplans) if (nplans > 1)
#endif
    {
#ifdef _OPENMP
        int w = nplans > 1 ? omp_get_thread_num() : 0;
#else
        int w = 0;
#endif
        float *dst[64];
        mv_outputs oi = {out->n, out->ids, dst};
        int i;
        while (w < nplans && (i = atomic_fetch_add(&next, 1)) < nimg) {
            for (int k = 0; k < out->n; k++) dst[k] = out->dst[k] + (size_t)i * o_img[k];
            if (mv_plan_run_timed(&plans[w], g, x + (size_t)i * x_img, &oi, 1, isa, NULL) != MV_OK)
                atomic_store(&failed, 1);
        }
    }
    return atomic_load(&failed) ? MV_ERR_NOMEM : MV_OK;
}
