/* session.c - run policy: mode choice, plan cache, locking, memory cap.
 * See session.h for the contract. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "session.h"

#define ERR(...) do { if (err) snprintf(err, errlen, __VA_ARGS__); } while (0)

mv_session *mv_session_new(mv_graph *g) {
    if (!g) return NULL;
    mv_session *s = calloc(1, sizeof(*s));
    if (!s || mv_mutex_init(&s->lock) != 0) { free(s); mv_graph_free(g); return NULL; }
    s->g = g;
    mv_plan_opts d = mv_plan_opts_default();
    atomic_init(&s->max_bytes, 0);
    atomic_init(&s->fuse_min_bytes, d.fuse_min_bytes);
    atomic_init(&s->winograd, d.winograd);
    return s;
}

static void release_img_plans(mv_session *s) {
    for (int i = 0; i < s->n_img; i++) mv_plan_release(&s->img[i]);
    free(s->img);
    s->img = NULL;
    s->n_img = 0;
}

static void release_cache(mv_session *s) {
    if (s->has_cache) mv_plan_release(&s->cache);
    s->has_cache = 0;
}

void mv_session_free(mv_session *s) {
    if (!s) return;
    release_img_plans(s);
    release_cache(s);
    mv_mutex_destroy(&s->lock);
    mv_graph_free(s->g);
    free(s);
}

void mv_session_set_fusion(mv_session *s, size_t min_bytes) { atomic_store(&s->fuse_min_bytes, min_bytes); }
void mv_session_set_winograd(mv_session *s, int on) { atomic_store(&s->winograd, on != 0); }
void mv_session_set_max_bytes(mv_session *s, size_t max_bytes) { atomic_store(&s->max_bytes, max_bytes); }
size_t mv_session_max_bytes(mv_session *s) { return atomic_load(&s->max_bytes); }

mv_plan_opts mv_session_opts(mv_session *s) {
    mv_plan_opts o = {.fuse_min_bytes = atomic_load(&s->fuse_min_bytes), .winograd = atomic_load(&s->winograd)};
    return o;
}

void mv_session_drop_plans(mv_session *s) {
    mv_mutex_lock(&s->lock);
    release_img_plans(s);
    release_cache(s);
    mv_mutex_unlock(&s->lock);
}

static int same_opts(const mv_plan_opts *a, const mv_plan_opts *b) {
    return a->fuse_min_bytes == b->fuse_min_bytes && a->winograd == b->winograd;
}

/* Whole images per worker for batches of at least two images per worker
 * (activations of one image stay in cache, no synchronisation between
 * layers); never when timing nodes, nor single-threaded in a forked child
 * (the image loop is an OpenMP region). */
static int choose_by_image(int B, int nth, int profiling, int single_only) {
    return B >= 2 * nth && !profiling && !(nth == 1 && single_only);
}

static int cache_fits(const mv_session *s, int B, int H, int W, int nth, const mv_plan_opts *o) {
    return s->has_cache && s->cache.B == B && s->cache.H == H && s->cache.W == W && s->cache.nth >= nth &&
           same_opts(&s->cache.opts, o);
}

static int img_fits(const mv_session *s, int H, int W, int nth, const mv_plan_opts *o) {
    return s->n_img == nth && s->img[0].H == H && s->img[0].W == W && same_opts(&s->img[0].opts, o);
}

static mv_status over_cap(size_t need, size_t cap, int B, int C, int H, int W, char *err, size_t errlen) {
    if (!cap || need <= cap) return MV_OK;
    ERR("input %dx%dx%dx%d needs %.1f MiB of activations, above the cap of %.1f MiB (model.set_memory_limit)",
        B, C, H, W, need / 1048576.0, cap / 1048576.0);
    return MV_ERR_NOMEM;
}

/* dst = a copy of src's layout (no arena). */
static mv_status plan_clone(mv_plan *dst, const mv_plan *src, int nnodes) {
    *dst = *src;
    dst->arena = NULL;
    dst->t = malloc((size_t)src->ntensors * sizeof(mv_tensor_info));
    dst->mode = malloc((size_t)(nnodes ? nnodes : 1));
    if (!dst->t || !dst->mode) { free(dst->t); free(dst->mode); memset(dst, 0, sizeof(*dst)); return MV_ERR_NOMEM; }
    memcpy(dst->t, src->t, (size_t)src->ntensors * sizeof(mv_tensor_info));
    memcpy(dst->mode, src->mode, (size_t)(nnodes ? nnodes : 1));
    return MV_OK;
}

/* Installs nth single-image plans made from the dry layout `one` (consumed). */
static mv_status install_img_plans(mv_session *s, mv_plan *one, int nth, char *err, size_t errlen) {
    release_img_plans(s);
    s->img = calloc((size_t)nth, sizeof(mv_plan));
    if (!s->img) { mv_plan_release(one); return MV_ERR_NOMEM; }
    mv_status st = mv_plan_alloc(one, err, errlen);
    if (st != MV_OK) { mv_plan_release(one); free(s->img); s->img = NULL; return st; }
    s->img[0] = *one;
    s->n_img = 1;
    for (int i = 1; i < nth; i++) {
        st = plan_clone(&s->img[i], one, s->g->nnodes);
        if (st == MV_OK) st = mv_plan_alloc(&s->img[i], err, errlen);
        if (st != MV_OK) { mv_plan_release(&s->img[i]); release_img_plans(s); return st; }
        s->n_img = i + 1;
    }
    return MV_OK;
}

mv_status mv_session_bytes(mv_session *s, int B, int H, int W, int nth, size_t *bytes,
                           char *err, size_t errlen) {
    mv_plan_opts o = mv_session_opts(s);
    mv_plan p;
    mv_status st;
    *bytes = 0;
    if (choose_by_image(B, nth, 0, 0)) {
        st = mv_plan_init(&p, s->g, 1, H, W, 1, &o, 1, err, errlen);
        if (st != MV_OK) return st;
        *bytes = (size_t)nth * mv_plan_bytes(&p);
        mv_plan_release(&p);
        B -= B / nth * nth;
        if (B == 0) return MV_OK;
    }
    st = mv_plan_init(&p, s->g, B, H, W, nth, &o, 1, err, errlen);
    if (st != MV_OK) return st;
    *bytes += mv_plan_bytes(&p);
    mv_plan_release(&p);
    return MV_OK;
}

/* The cached plans for this call, made (once) or reused; lock held. */
static mv_status take_cached(mv_call *c, size_t cap, char *err, size_t errlen) {
    mv_session *s = c->s;
    const int C = s->g->in_channels;
    mv_plan one, rest;
    int have_one = 0, have_rest = 0;
    size_t need = 0;
    mv_status st = MV_OK;
    int nrest = c->by_image ? c->B - c->nfull : c->B;
    if (c->by_image) {
        if (img_fits(s, c->H, c->W, c->nth, &c->opts)) {
            need = (size_t)c->nth * mv_plan_bytes(&s->img[0]);
        } else {
            st = mv_plan_init(&one, s->g, 1, c->H, c->W, 1, &c->opts, 1, err, errlen);
            if (st != MV_OK) return st;
            have_one = 1;
            need = (size_t)c->nth * mv_plan_bytes(&one);
        }
    }
    if (nrest) {
        if (cache_fits(s, nrest, c->H, c->W, c->nth, &c->opts)) {
            need += mv_plan_bytes(&s->cache);
        } else {
            st = mv_plan_init(&rest, s->g, nrest, c->H, c->W, c->nth, &c->opts, 1, err, errlen);
            if (st != MV_OK) goto fail;
            have_rest = 1;
            need += mv_plan_bytes(&rest);
        }
    }
    st = over_cap(need, cap, c->B, C, c->H, c->W, err, errlen);
    if (st != MV_OK) goto fail;
    if (have_one) {
        have_one = 0;
        st = install_img_plans(s, &one, c->nth, err, errlen);
        if (st != MV_OK) goto fail;
    }
    if (have_rest) {
        release_cache(s);
        have_rest = 0;
        s->cache = rest;
        st = mv_plan_alloc(&s->cache, err, errlen);
        if (st != MV_OK) { mv_plan_release(&s->cache); return st; }
        s->has_cache = 1;
    }
    c->plan = nrest ? &s->cache : NULL;
    return MV_OK;
fail:
    if (have_one) mv_plan_release(&one);
    if (have_rest) mv_plan_release(&rest);
    return st;
}

mv_status mv_session_begin(mv_session *s, mv_call *c, int B, int H, int W, int nth,
                           const int *ids, int nout, int profiling, int single_only,
                           char *err, size_t errlen) {
    memset(c, 0, sizeof(*c));
    c->s = s;
    if (nout < 0 || nout > MV_SESSION_MAX_OUT) { ERR("at most %d outputs", MV_SESSION_MAX_OUT); return MV_ERR_ARG; }
    for (int k = 0; k < nout; k++) {
        if (ids[k] < 1 || ids[k] > s->g->nnodes) { ERR("output id %d out of range", ids[k]); return MV_ERR_ARG; }
        c->ids[k] = ids[k];
    }
    if (B < 0 || H < 1 || W < 1 || nth < 1) { ERR("input height and width must be >= 1"); return MV_ERR_ARG; }
    c->B = B; c->H = H; c->W = W; c->nth = nth; c->nout = nout;
    c->opts = mv_session_opts(s);            /* one snapshot of the settings for the whole call */
    const size_t cap = atomic_load(&s->max_bytes);
    mv_status st = MV_OK;
    const mv_plan *shapes;                    /* the plan the output shapes are read from */
    int shape_B = B;
    if (B == 0) {                             /* empty batch: shapes from a 1-image layout */
        st = mv_plan_init(&c->priv, s->g, 1, H, W, 1, &c->opts, 1, err, errlen);
        if (st != MV_OK) return st;
        shapes = &c->priv;
    } else {
        c->by_image = choose_by_image(B, nth, profiling, single_only);
        c->nfull = c->by_image ? B / nth * nth : 0;
        if (mv_mutex_trylock(&s->lock)) {
            c->locked = 1;
            st = take_cached(c, cap, err, errlen);
            if (st != MV_OK) { mv_session_end(c); return st; }
        } else {                              /* another call holds the cache: a private plan */
            c->by_image = 0;
            c->nfull = 0;
            st = mv_plan_init(&c->priv, s->g, B, H, W, nth, &c->opts, 1, err, errlen);
            if (st == MV_OK) st = over_cap(mv_plan_bytes(&c->priv), cap, B, s->g->in_channels, H, W, err, errlen);
            if (st == MV_OK) st = mv_plan_alloc(&c->priv, err, errlen);
            if (st != MV_OK) { mv_session_end(c); return st; }
            c->plan = &c->priv;
        }
        shapes = c->by_image ? &s->img[0] : c->plan;
    }
    for (int k = 0; k < nout; k++) {
        if (!mv_plan_tensor_stored(shapes, c->ids[k])) {
            ERR("output id %d is inside a fused block at this input size (Graph.set_fusion(-1) keeps every tensor)",
                c->ids[k]);
            mv_session_end(c);
            return MV_ERR_ARG;
        }
        const mv_tensor_info *t = &shapes->t[c->ids[k]];
        c->out[k] = (mv_shape){shape_B, t->C, t->H, t->W};
    }
    return MV_OK;
}

mv_status mv_session_run(mv_call *c, const float *x, float *const *dst, mv_isa isa, const mv_profile *prof) {
    if (c->B == 0) return MV_OK;
    mv_session *s = c->s;
    float *d[MV_SESSION_MAX_OUT];
    for (int k = 0; k < c->nout; k++) d[k] = dst[k];
    mv_outputs out = {c->nout, c->ids, d};
    mv_status st = MV_OK;
    size_t done_in = 0;
    if (c->by_image) {
        st = mv_plan_run_images(s->img, c->nth, s->g, x, c->nfull, &out, isa);
        if (st != MV_OK || c->nfull == c->B) return st;
        for (int k = 0; k < c->nout; k++) d[k] = dst[k] + (size_t)c->nfull * mv_plan_image_floats(&s->img[0], c->ids[k]);
        done_in = (size_t)c->nfull * s->g->in_channels * c->H * c->W;
    }
    return mv_plan_run_timed(c->plan, s->g, x + done_in, &out, c->nth, isa, prof);
}

void mv_session_end(mv_call *c) {
    if (c->locked) mv_mutex_unlock(&c->s->lock);
    c->locked = 0;
    mv_plan_release(&c->priv);
    c->plan = NULL;
}
