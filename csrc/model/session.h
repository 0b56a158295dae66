/* session.h - the run policy for one graph: how a call runs (layer-parallel
 * or whole images per worker), which plans are cached and reused, who may
 * use them (locking), and the activation memory cap.  The binding's run is a
 * thin wrapper around mv_session_begin / mv_session_run / mv_session_end.
 *
 * A call:
 *   mv_session_begin  snapshots the settings (fusion, Winograd, cap), picks
 *                     the mode, finds the cached plan for this shape or plans
 *                     it once, refuses it (MV_ERR_NOMEM, with the estimate)
 *                     before allocating when it needs more than the cap, and
 *                     gives the output shapes;
 *   mv_session_run    runs it (no Python, no allocation but the executor's
 *                     small phase table);
 *   mv_session_end    gives the plans back.
 * Between begin and end the call owns its plans: either the session's cache
 * (taken with a try-lock) or, when another call holds the cache, a private
 * plan of its own.  So concurrent calls never share an arena, and a call
 * never waits for another one to finish.
 *
 * Settings may change at any time from any thread: each call uses the
 * snapshot it took in begin (the old or the new value of each setter, never a
 * mix within one call), and a cached plan made with other settings is never
 * reused.  No function here touches Python objects. */
#ifndef MV_SESSION_H
#define MV_SESSION_H

#include <stdatomic.h>
#include "graph.h"

#define MV_SESSION_MAX_OUT 64

typedef struct {
    mv_graph *g;                   /* owned */
    mv_mutex lock;                 /* guards the cached plans below */
    mv_plan cache;                 /* layer-parallel plan reused by calls of the same shape */
    int has_cache;
    mv_plan *img;                  /* throughput mode: one single-image plan per worker */
    int n_img;
    _Atomic size_t max_bytes;      /* activation memory cap (0: none) */
    _Atomic size_t fuse_min_bytes; /* mv_plan_opts.fuse_min_bytes */
    atomic_int winograd;           /* mv_plan_opts.winograd */
} mv_session;

typedef struct {
    int B, C, H, W;                /* an output tensor, NCHW */
} mv_shape;

/* One call in flight (on the caller's stack). */
typedef struct {
    mv_session *s;
    int B, H, W, nth;
    int nout;
    int ids[MV_SESSION_MAX_OUT];
    mv_shape out[MV_SESSION_MAX_OUT];
    mv_plan_opts opts;
    int by_image;                  /* whole images per worker (nfull of them), the rest layer-parallel */
    int nfull;
    int locked;                    /* holds s->lock: uses s->cache / s->img */
    mv_plan priv;                  /* private layer-parallel plan when the cache is busy */
    mv_plan *plan;                 /* the layer-parallel plan (cache, priv, or NULL) */
} mv_call;

/* Takes ownership of g (freed by mv_session_free, or at once if this fails). */
mv_session *mv_session_new(mv_graph *g);
void mv_session_free(mv_session *s);

void mv_session_set_fusion(mv_session *s, size_t min_bytes);   /* SIZE_MAX: never */
void mv_session_set_winograd(mv_session *s, int on);
void mv_session_set_max_bytes(mv_session *s, size_t max_bytes); /* 0: no cap */
mv_plan_opts mv_session_opts(mv_session *s);
size_t mv_session_max_bytes(mv_session *s);
/* Frees the cached plans (waits for a call that holds them). */
void mv_session_drop_plans(mv_session *s);

/* Activation bytes a call of this shape would allocate when it runs
 * uncontended (what the cap is compared with). */
mv_status mv_session_bytes(mv_session *s, int B, int H, int W, int nth, size_t *bytes,
                           char *err, size_t errlen);

/* B == 0 is allowed (shapes only; mv_session_run does nothing).  profiling:
 * the call will time nodes (layer-parallel only).  single_only: never enter
 * OpenMP (a forked child). */
mv_status mv_session_begin(mv_session *s, mv_call *c, int B, int H, int W, int nth,
                           const int *ids, int nout, int profiling, int single_only,
                           char *err, size_t errlen);
/* x: NCHW input; dst[k]: NCHW buffer of c->out[k]; prof: NULL, or what
 * to record (graph.h: node_seconds g->nnodes entries, worker c->nth). */
mv_status mv_session_run(mv_call *c, const float *x, float *const *dst, mv_isa isa,
                         const mv_profile *prof);
void mv_session_end(mv_call *c);

#endif /* MV_SESSION_H */
