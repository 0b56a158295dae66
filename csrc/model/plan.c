/* plan.c - per-shape planning: every tensor's shape, the fusion decision
 * per chain, one activation arena laid out by tensor liveness, per-worker
 * scratch.  See graph.h. */
#include <stdlib.h>
#include <string.h>
#include "graph_internal.h"


typedef struct { size_t off, size; int live; } block;

/* First fit over the blocks currently allocated (kept sorted by offset). */
static size_t arena_alloc(block *blk, int *nblk, size_t size, size_t *high) {
    size_t pos = 0;
    int k = 0;
    for (; k < *nblk; k++) {
        if (blk[k].off - pos >= size) break;
        pos = blk[k].off + blk[k].size;
    }
    memmove(blk + k + 1, blk + k, (size_t)(*nblk - k) * sizeof(block));
    blk[k].off = pos; blk[k].size = size; blk[k].live = 1;
    (*nblk)++;
    if (pos + size > *high) *high = pos + size;
    return pos;
}

static void arena_free(block *blk, int *nblk, size_t off) {
    for (int k = 0; k < *nblk; k++)
        if (blk[k].off == off) {
            memmove(blk + k, blk + k + 1, (size_t)(*nblk - k - 1) * sizeof(block));
            (*nblk)--;
            return;
        }
}

void mv_plan_release(mv_plan *p) {
    if (!p) return;
    free(p->t);
    free(p->mode);
    mv_aligned_free(p->arena);
    memset(p, 0, sizeof(*p));
}

size_t mv_plan_bytes(const mv_plan *p) { return p->arena_floats * sizeof(float); }

int mv_plan_tensor_stored(const mv_plan *p, int id) {
    return id >= 0 && id < p->ntensors &&
           (id == 0 || p->mode[id - 1] == MV_MODE_ALONE || p->mode[id - 1] == MV_MODE_TAIL);
}

mv_plan_opts mv_plan_opts_default(void) {
    mv_plan_opts o = {.fuse_min_bytes = MV_FUSE_MIN_BYTES, .winograd = 1};
    return o;
}

mv_status mv_plan_init(mv_plan *p, const mv_graph *g, int B, int H, int W,
                       int nth, const mv_plan_opts *opts, int dry_run,
                       char *err, size_t errlen) {
    memset(p, 0, sizeof(*p));
    p->opts = opts ? *opts : mv_plan_opts_default();
    int nt = g->nnodes + 1;
    mv_status st = MV_OK;
    int *last = NULL, nblk = 0;
    block *blk = NULL;
    if (B < 1 || H < 1 || W < 1 || nth < 1) { ERR("bad input shape"); return MV_ERR_ARG; }
    p->B = B; p->H = H; p->W = W; p->nth = nth; p->ntensors = nt;
    p->t = calloc((size_t)nt, sizeof(mv_tensor_info));
    p->mode = calloc((size_t)(g->nnodes ? g->nnodes : 1), sizeof(unsigned char));
    last = calloc((size_t)nt, sizeof(int));
    blk = calloc((size_t)nt, sizeof(block));
    if (!p->t || !p->mode || !last || !blk) { st = MV_ERR_NOMEM; goto done; }

    mv_tensor_info *t = p->t;
    t[0] = (mv_tensor_info){B, H, W, g->in_channels, 0, 0};
    size_t scratch = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const mv_node *n = &g->nodes[i];
        mv_tensor_info *x = &t[n->in[0]], *o = &t[i + 1];
        *o = (mv_tensor_info){x->B, x->H, x->W, n->cout, 0, i + 1};
        switch (n->op) {
        case MV_OP_CONV:
        case MV_OP_DWCONV: {
            int dw = n->op == MV_OP_DWCONV;
            const mv_conv_params *c = &n->p.conv;
            const mv_dwconv_params *d = &n->p.dwconv;
            int kh = dw ? 3 : c->kh, kw = dw ? 3 : c->kw;
            int s = dw ? d->stride : c->stride, pad = dw ? d->pad : c->pad, dil = dw ? d->dilation : c->dilation;
            int concat = !dw && c->concat;
            o->H = mv_conv_out_size(x->H, kh, s, pad, dil);
            o->W = mv_conv_out_size(x->W, kw, s, pad, dil);
            if (o->H < 1 || o->W < 1) {
                ERR("node %d: a %dx%d feature map is too small for its %dx%d convolution", i, x->H, x->W, kh, kw);
                st = MV_ERR_ARG; goto done;
            }
            if (!dw && n->w2) {           /* Winograd scratch, sized for one worker (largest blocks) */
                size_t s = mv_conv3x3_wino_scratch_floats(mv_conv3x3_wino_tile(x->H, x->W), x->H, x->W,
                                                          x->C + (concat ? t[n->in[1]].C : 0), n->cout, 1);
                if (s > scratch) scratch = s;
            }
            for (int k = 1; k < n->nin; k++) {
                mv_tensor_info *y = &t[n->in[k]];
                int want_h = (k == 1 && concat) ? x->H : o->H;
                int want_w = (k == 1 && concat) ? x->W : o->W;
                if (y->B != x->B || y->H != want_h || y->W != want_w) {
                    ERR("node %d: input %d is %dx%d, expected %dx%d", i, k, y->H, y->W, want_h, want_w);
                    st = MV_ERR_ARG; goto done;
                }
            }
            break;
        }
        case MV_OP_ATTENTION: {
            int ph = n->p.attention.patch_h, pw = n->p.attention.patch_w;
            if (x->H % ph || x->W % pw) {
                ERR("node %d: attention needs a map divisible by the %dx%d patch, got %dx%d", i, ph, pw, x->H, x->W);
                st = MV_ERR_ARG; goto done;
            }
            int N = (x->H / ph) * (x->W / pw);
            size_t s = mv_attention_scratch_floats(N, n->cout / n->p.attention.heads);
            if (s > scratch) scratch = s;
            break;
        }
        case MV_OP_SEP_ATTENTION: {
            int ph = n->p.sep_attention.patch_h, pw = n->p.sep_attention.patch_w;
            if (x->H % ph || x->W % pw) {
                ERR("node %d: attention needs a map divisible by the %dx%d patch, got %dx%d", i, ph, pw, x->H, x->W);
                st = MV_ERR_ARG; goto done;
            }
            size_t s = mv_sep_attention_scratch_floats((x->H / ph) * (x->W / pw), n->cout);
            if (s > scratch) scratch = s;
            break;
        }
        case MV_OP_CROP_PAD: {
            const mv_crop_pad_params *c = &n->p.crop_pad;
            if (!c->like) {
                o->H = x->H / c->multiple_h * c->multiple_h;
                o->W = x->W / c->multiple_w * c->multiple_w;
                if (o->H < 1 || o->W < 1) {
                    ERR("node %d: a %dx%d map is smaller than the %dx%d patch", i, x->H, x->W, c->multiple_h,
                        c->multiple_w);
                    st = MV_ERR_ARG; goto done;
                }
            } else {
                o->H = t[n->in[1]].H;
                o->W = t[n->in[1]].W;
            }
            if (o->H == x->H && o->W == x->W) o->root = x->root;   /* identity: alias */
            break;
        }
        case MV_OP_RESIZE: {
            const mv_resize_params *r = &n->p.resize;
            if (!r->like) {
                o->H = (x->H + r->multiple_h - 1) / r->multiple_h * r->multiple_h;
                o->W = (x->W + r->multiple_w - 1) / r->multiple_w * r->multiple_w;
            } else {
                o->H = t[n->in[1]].H;
                o->W = t[n->in[1]].W;
            }
            if (o->H == x->H && o->W == x->W) o->root = x->root;   /* identity: alias */
            break;
        }
        case MV_OP_GLOBAL_AVG_POOL:
            o->H = o->W = 1;
            break;
        case MV_OP_ADD:
        case MV_OP_CONCAT: {
            mv_tensor_info *y = &t[n->in[1]];
            if (y->B != x->B || y->H != x->H || y->W != x->W) {
                ERR("node %d: inputs are %dx%d and %dx%d", i, x->H, x->W, y->H, y->W);
                st = MV_ERR_ARG; goto done;
            }
            break;
        }
        default:
            break;
        }
    }
    /* fused chains: nodes i, i+1, i+2 -> tensors i+1, i+2 never stored */
    for (int i = 0; i + 2 < g->nnodes; i++) {
        if (!g->nodes[i].chain) continue;
        const mv_tensor_info *e = &t[i + 1];
        size_t bytes = (size_t)e->H * e->W * e->C * sizeof(float);
        if (bytes < p->opts.fuse_min_bytes) continue;
        int rows = mv_invres_group_rows(t[i + 3].H, t[i + 3].W);
        const mv_node *d = &g->nodes[i + 1];
        size_t s = mv_invres_scratch_floats(e->W, e->C, t[i + 3].W, rows, d->p.dwconv.stride, d->p.dwconv.dilation);
        if (s > scratch) scratch = s;
        p->mode[i] = MV_MODE_HEAD;
        p->mode[i + 1] = MV_MODE_INNER;
        p->mode[i + 2] = MV_MODE_TAIL;
        i += 2;
    }
    /* liveness by storage root */
    for (int i = 0; i < nt; i++) last[i] = i;
    for (int i = 0; i < g->nnodes; i++)
        for (int k = 0; k < g->nodes[i].nin; k++) {
            int r = t[g->nodes[i].in[k]].root;
            if (last[r] < i + 1) last[r] = i + 1;
        }
    for (int i = 1; i < nt; i++)          /* an alias keeps its root alive */
        if (t[i].root != i && last[t[i].root] < last[i]) last[t[i].root] = last[i];
    for (int i = 0; i < g->nnodes; i++) {
        if (p->mode[i] == MV_MODE_HEAD) { /* a chain reads its input until it writes its output */
            int r = t[g->nodes[i].in[0]].root;
            if (last[r] < i + 3) last[r] = i + 3;
        }
        if (!mv_plan_tensor_stored(p, i + 1)) last[i + 1] = -1;   /* never allocated or freed */
    }
    size_t high = 0;
    for (int i = 0; i < nt; i++) {
        if (!mv_plan_tensor_stored(p, i)) {
            t[i].offset = 0;
        } else if (t[i].root == i) {
            size_t sz;
            if (!mv_mul_ok((size_t)t[i].B * (size_t)t[i].H, (size_t)t[i].W, &sz) ||
                !mv_mul_ok(sz, (size_t)t[i].C, &sz) || sz > ((size_t)1 << 40)) {
                ERR("tensor %d is too large", i); st = MV_ERR_NOMEM; goto done;
            }
            t[i].offset = arena_alloc(blk, &nblk, MV_ROUND_UP(sz, 16), &high);
        } else {
            t[i].offset = t[t[i].root].offset;
        }
        /* free the storage whose last use is node i (tensor i is its output) */
        if (i > 0) {
            const mv_node *n = &g->nodes[i - 1];
            for (int k = 0; k < n->nin; k++) {
                int r = t[n->in[k]].root;
                if (last[r] == i) { arena_free(blk, &nblk, t[r].offset); last[r] = -1; }
            }
        }
        if (last[i] == i && t[i].root == i) { arena_free(blk, &nblk, t[i].offset); last[i] = -1; }
    }
    p->scratch_offset = MV_ROUND_UP(high, 16);
    p->scratch_per_worker = MV_ROUND_UP(scratch, 16);
    size_t total;
    if (!mv_mul_ok(p->scratch_per_worker, (size_t)nth, &total) ||
        !mv_add_ok(total, p->scratch_offset, &total)) { ERR("arena too large"); st = MV_ERR_NOMEM; goto done; }
    p->arena_floats = total;
    if (!dry_run) st = mv_plan_alloc(p, err, errlen);
done:
    free(last);
    free(blk);
    if (st != MV_OK) mv_plan_release(p);
    return st;
}

mv_status mv_plan_alloc(mv_plan *p, char *err, size_t errlen) {
    if (p->arena) return MV_OK;
    p->arena = mv_aligned_alloc(p->arena_floats * sizeof(float));
    if (!p->arena) {
        ERR("cannot allocate %zu bytes for activations", p->arena_floats * sizeof(float));
        return MV_ERR_NOMEM;
    }
    return MV_OK;
}
