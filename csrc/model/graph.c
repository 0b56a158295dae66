/* graph.c - graph construction, per-shape planning and the executor.
 * See graph.h for the life cycle. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sched.h>
#include <stdatomic.h>
#include "graph.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define ERR(...) do { if (err) snprintf(err, errlen, __VA_ARGS__); } while (0)

mv_graph *mv_graph_new(int nnodes, int in_channels) {
    if (nnodes < 0 || in_channels < 1) return NULL;
    mv_graph *g = calloc(1, sizeof(*g));
    if (!g) return NULL;
    g->nodes = calloc((size_t)(nnodes ? nnodes : 1), sizeof(mv_node));
    if (!g->nodes) { free(g); return NULL; }
    g->nnodes = nnodes;
    g->in_channels = in_channels;
    return g;
}

void mv_graph_free(mv_graph *g) {
    if (!g) return;
    for (int i = 0; i < g->nnodes; i++) {
        mv_aligned_free(g->nodes[i].w);
        mv_aligned_free(g->nodes[i].bias);
        mv_aligned_free(g->nodes[i].gamma);
        mv_aligned_free(g->nodes[i].w2);
    }
    mv_aligned_free(g->zero);
    free(g->nodes);
    free(g);
}

int mv_graph_tensor_channels(const mv_graph *g, int id) {
    if (id == 0) return g->in_channels;
    if (id < 1 || id > g->nnodes) return -1;
    return g->nodes[id - 1].cout;
}

static float *dup_floats(const float *src, size_t n) {
    float *d = mv_aligned_alloc(n * sizeof(float));
    if (d && src) memcpy(d, src, n * sizeof(float));
    return d;
}

mv_status mv_graph_set_node(mv_graph *g, int index, const mv_node *spec,
                            const float *w, const float *bias,
                            const float *gamma, char *err, size_t errlen) {
    if (index < 0 || index >= g->nnodes) { ERR("node index %d out of range", index); return MV_ERR_ARG; }
    mv_node n = *spec;
    n.w = n.bias = n.gamma = n.w2 = NULL;
    if (n.nin < 1 || n.nin > MV_MAX_IN) { ERR("node %d: %d inputs", index, n.nin); return MV_ERR_ARG; }
    int cin[MV_MAX_IN];
    for (int k = 0; k < n.nin; k++) {
        if (n.in[k] < 0 || n.in[k] > index) {
            ERR("node %d: input %d refers to tensor %d, which is not computed before it", index, k, n.in[k]);
            return MV_ERR_ARG;
        }
        cin[k] = mv_graph_tensor_channels(g, n.in[k]);
    }
    switch (n.op) {
    case MV_OP_CONV: {
        const mv_conv_params *c = &n.p.conv;
        int kh = c->kh, kw = c->kw, stride = c->stride, pad = c->pad, dil = c->dilation;
        int has_x2 = c->concat != 0, has_res = c->residual != 0;
        if (kh < 1 || kw < 1 || kh > 64 || kw > 64 || stride < 1 || pad < 0 || dil < 1 || n.cout < 1 ||
            stride > 65536 || pad > 65536 || dil > 65536 || c->act < 0 || c->act > MV_ACT_RELU ||
            n.nin != 1 + has_x2 + has_res) { ERR("node %d: bad conv parameters", index); return MV_ERR_ARG; }
        int Cin = cin[0] + (has_x2 ? cin[1] : 0);
        if (has_res && cin[n.nin - 1] != n.cout) {
            ERR("node %d: residual has %d channels, conv output %d", index, cin[n.nin - 1], n.cout);
            return MV_ERR_ARG;
        }
        n.w = mv_aligned_alloc(mv_conv2d_packed_floats(kh, kw, Cin, n.cout) * sizeof(float));
        if (!n.w) return MV_ERR_NOMEM;
        mv_pack_conv2d_weights(w, n.cout, Cin, kh, kw, n.w);
        if (mv_conv3x3_wino_shape_ok(kh, kw, stride, pad, dil, has_res) && mv_conv3x3_wino_pays(Cin, n.cout)) {
            float *tmp = mv_aligned_alloc((size_t)n.cout * Cin * sizeof(float));
            n.w2 = mv_aligned_alloc(mv_conv3x3_wino_packed_floats(Cin, n.cout) * sizeof(float));
            if (!tmp || !n.w2) { mv_aligned_free(tmp); mv_aligned_free(n.w); mv_aligned_free(n.w2); return MV_ERR_NOMEM; }
            mv_pack_conv3x3_wino_weights(w, n.cout, Cin, tmp, n.w2);
            mv_aligned_free(tmp);
        }
        if (bias && !(n.bias = dup_floats(bias, (size_t)n.cout))) return MV_ERR_NOMEM;
        if (Cin > g->max_cin) g->max_cin = Cin;
        break;
    }
    case MV_OP_DWCONV: {
        const mv_dwconv_params *d = &n.p.dwconv;
        n.cout = cin[0];
        if (d->stride < 1 || d->pad < 0 || d->dilation < 1 || d->stride > 65536 || d->pad > 65536 ||
            d->dilation > 65536 || d->act < 0 || d->act > MV_ACT_RELU) {
            ERR("node %d: bad dwconv parameters", index); return MV_ERR_ARG;
        }
        n.w = mv_aligned_alloc((size_t)9 * n.cout * sizeof(float));
        if (!n.w) return MV_ERR_NOMEM;
        mv_pack_dwconv2d_weights(w, n.cout, n.w);
        if (bias && !(n.bias = dup_floats(bias, (size_t)n.cout))) return MV_ERR_NOMEM;
        break;
    }
    case MV_OP_LAYERNORM:
    case MV_OP_GROUPNORM1:
        n.cout = cin[0];
        if (!(n.gamma = dup_floats(gamma, (size_t)n.cout)) || !(n.bias = dup_floats(bias, (size_t)n.cout)))
            return MV_ERR_NOMEM;
        break;
    case MV_OP_ATTENTION:
        if (cin[0] % 3 || n.p.attention.heads < 1 || (cin[0] / 3) % n.p.attention.heads ||
            n.p.attention.patch_h < 1 || n.p.attention.patch_w < 1) {
            ERR("node %d: attention input has %d channels, not 3 x heads x head_dim", index, cin[0]);
            return MV_ERR_ARG;
        }
        n.cout = cin[0] / 3;
        break;
    case MV_OP_SEP_ATTENTION:
        if (cin[0] < 3 || (cin[0] - 1) % 2 || n.p.sep_attention.patch_h < 1 || n.p.sep_attention.patch_w < 1) {
            ERR("node %d: separable attention input has %d channels, not 1 + 2 x dim", index, cin[0]);
            return MV_ERR_ARG;
        }
        n.cout = (cin[0] - 1) / 2;
        break;
    case MV_OP_CROP_PAD:
        n.cout = cin[0];
        if ((!n.p.crop_pad.like && (n.nin != 1 || n.p.crop_pad.multiple_h < 1 || n.p.crop_pad.multiple_w < 1)) ||
            (n.p.crop_pad.like == 1 && n.nin != 2) || n.p.crop_pad.like < 0 || n.p.crop_pad.like > 1) {
            ERR("node %d: bad crop/pad parameters", index); return MV_ERR_ARG;
        }
        break;
    case MV_OP_RESIZE:
        n.cout = cin[0];
        if ((!n.p.resize.like && (n.nin != 1 || n.p.resize.multiple_h < 1 || n.p.resize.multiple_w < 1)) ||
            (n.p.resize.like == 1 && n.nin != 2) || n.p.resize.like < 0 || n.p.resize.like > 1) {
            ERR("node %d: bad resize parameters", index); return MV_ERR_ARG;
        }
        break;
    case MV_OP_ACT:
        if (n.p.act.act < 0 || n.p.act.act > MV_ACT_RELU) { ERR("node %d: unknown activation %d", index, n.p.act.act); return MV_ERR_ARG; }
        n.cout = cin[0];
        break;
    case MV_OP_GAP:
        n.cout = cin[0];
        break;
    case MV_OP_ADD:
        if (n.nin != 2 || cin[0] != cin[1]) { ERR("node %d: add of %d and %d channels", index, cin[0], cin[1]); return MV_ERR_ARG; }
        n.cout = cin[0];
        break;
    case MV_OP_CONCAT:
        if (n.nin != 2) { ERR("node %d: concat needs 2 inputs", index); return MV_ERR_ARG; }
        n.cout = cin[0] + cin[1];
        break;
    default:
        ERR("node %d: unknown op %d", index, n.op);
        return MV_ERR_ARG;
    }
    g->nodes[index] = n;
    return MV_OK;
}

static int is_pointwise(const mv_node *n) {
    const mv_conv_params *c = &n->p.conv;
    return n->op == MV_OP_CONV && c->kh == 1 && c->kw == 1 && c->stride == 1 && c->pad == 0 && !c->concat;
}

/* How many node inputs read tensor id. */
static int readers(const mv_graph *g, int id) {
    int c = 0;
    for (int i = 0; i < g->nnodes; i++)
        for (int k = 0; k < g->nodes[i].nin; k++) c += g->nodes[i].in[k] == id;
    return c;
}

mv_status mv_graph_finalize(mv_graph *g, char *err, size_t errlen) {
    (void)err; (void)errlen;
    for (int i = 0; i + 2 < g->nnodes; i++) {
        mv_node *e = &g->nodes[i], *d = &g->nodes[i + 1], *p = &g->nodes[i + 2];
        int res_ok = !p->p.conv.residual || (p->nin == 2 && p->in[1] == e->in[0]);
        e->chain = is_pointwise(e) && !e->p.conv.residual && e->nin == 1 &&
                   d->op == MV_OP_DWCONV && d->in[0] == i + 1 &&
                   is_pointwise(p) && p->in[0] == i + 2 && p->p.conv.act == MV_ACT_NONE && res_ok &&
                   readers(g, i + 1) == 1 && readers(g, i + 2) == 1;
    }
    g->zero = mv_aligned_alloc((size_t)(g->max_cin + 16) * sizeof(float));
    if (!g->zero) return MV_ERR_NOMEM;
    memset(g->zero, 0, (size_t)(g->max_cin + 16) * sizeof(float));
    return MV_OK;
}

/* ---- planning ------------------------------------------------------------ */

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

/* Output rows per group of a fused chain: enough pixels for full GEMM tiles. */
static int invres_rows(int OH, int OW) {
    int g = (64 + OW - 1) / OW;
    for (int k = g; k < g + 3; k++)        /* whole 12-row (and 6-row) GEMM tiles when possible */
        if ((k * OW) % 12 == 0) { g = k; break; }
    return MV_MAX(1, MV_MIN(g, OH));
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
                size_t s = mv_conv3x3_wino_scratch_floats(x->H, x->W, x->C + (concat ? t[n->in[1]].C : 0),
                                                          n->cout, 1);
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
        case MV_OP_GAP:
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
        int rows = invres_rows(t[i + 3].H, t[i + 3].W);
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

/* ---- execution ------------------------------------------------------------ */

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
            .Y = A + y->offset, .rows = invres_rows(y->H, y->W), .scratch = scratch};
        mv_invres_nhwc_f32(&a, kt, tid, nth);
        return;
    }
    switch (n->op) {
    case MV_OP_CONV: {
        const mv_conv_params *c = &n->p.conv;
        const mv_tensor_info *x2 = c->concat ? &p->t[n->in[1]] : NULL;
        const mv_tensor_info *r = c->residual ? &p->t[n->in[n->nin - 1]] : NULL;
        if (is_pointwise(n)) {
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
                a.Wp = n->w2;
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
    case MV_OP_GAP:
        mv_gap_nhwc_f32__ref(X, x->B, (ptrdiff_t)x->H * x->W, x->C, x->C, Y, tid, nth);
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

static double mv_now(void) {
#ifdef _OPENMP
    return omp_get_wtime();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
#endif
}

mv_status mv_plan_run(mv_plan *p, const mv_graph *g, const float *x,
                      const mv_outputs *out, int nth, mv_isa isa) {
    return mv_plan_run_timed(p, g, x, out, nth, isa, NULL);
}

/* ---- executor ---------------------------------------------------------------
 * A run is a list of phases (input layout change, each node, each output
 * copy).  Phase k is cut into nchunk[k] chunks; workers claim chunks with an
 * atomic counter and start phase k only when every chunk of phase k-1 is
 * done.  A worker that the OS does not schedule therefore never holds the
 * others up unless it is inside a chunk: on an oversubscribed machine the
 * network degrades to fewer threads instead of stalling at every node (a
 * plain barrier costs a scheduler time slice per node there).  Chunk
 * boundaries only decide who computes what; every kernel computes each output
 * element the same way whatever its share, so results are bit-identical for
 * any thread count and any interleaving. */

enum { PH_INPUT = 0, PH_NODE = 1, PH_EMIT = 2 };

typedef struct {
    int kind, node;        /* node index for PH_NODE / PH_EMIT (tensor node+1) */
    int nchunk;
    atomic_int next, done;
} mv_phase;

typedef struct {
    mv_plan *p;
    const mv_graph *g;
    const float *x;
    const mv_outputs *out;
    const mv_kernel_table *kt;
    mv_phase *ph;
    int nph;
    double *times;         /* per node, or NULL */
    double t_start;
} mv_run;

static inline void mv_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

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
    for (int k = 0; k < r->nph; k++) {
        if (k > 0) {
            mv_phase *prev = &r->ph[k - 1];
            for (int spins = 0; atomic_load_explicit(&prev->done, memory_order_acquire) < prev->nchunk; spins++) {
                if (spins < 4000) mv_cpu_relax();
                else sched_yield();
            }
        }
        mv_phase *ph = &r->ph[k];
        int c;
        while ((c = atomic_fetch_add_explicit(&ph->next, 1, memory_order_relaxed)) < ph->nchunk) {
            run_phase(r, k, c, worker);
            if (atomic_fetch_add_explicit(&ph->done, 1, memory_order_acq_rel) + 1 == ph->nchunk &&
                r->times && ph->kind == PH_NODE)
                r->times[ph->node] = mv_now();
        }
    }
}

mv_status mv_plan_run_timed(mv_plan *p, const mv_graph *g, const float *x,
                            const mv_outputs *out, int nth, mv_isa isa,
                            double *times) {
    if (nth > p->nth) nth = p->nth;
    if (nth < 1) nth = 1;
    int nph = 1 + g->nnodes;
    for (int i = 0; i < g->nnodes; i++) nph += wants(out, i + 1);
    mv_phase *ph = malloc((size_t)nph * sizeof(mv_phase));
    if (!ph) return MV_ERR_NOMEM;
    /* more chunks than workers balances uneven shares; one when alone */
    int chunks = nth > 1 ? 4 * nth : 1;
    int k = 0;
    ph[k].kind = PH_INPUT; ph[k].node = -1; ph[k].nchunk = chunks; k++;
    for (int i = 0; i < g->nnodes; i++) {
        int skip = p->mode[i] == MV_MODE_INNER || p->mode[i] == MV_MODE_TAIL;   /* run by the head */
        if (!skip) {
            ph[k].kind = PH_NODE; ph[k].node = i; ph[k].nchunk = chunks;
            if (p->mode[i] == MV_MODE_HEAD) {  /* every chunk re-expands its edge rows: keep them tall */
                const mv_tensor_info *y = &p->t[i + 3];
                int minrows = MV_MAX(invres_rows(y->H, y->W), g->nodes[i + 1].p.dwconv.stride == 1 ? 8 : 4);
                ptrdiff_t c = (ptrdiff_t)y->B * y->H / minrows;
                ph[k].nchunk = (int)MV_MAX(1, MV_MIN((ptrdiff_t)chunks, c));
            }
            k++;
        }
        if (wants(out, i + 1)) { ph[k].kind = PH_EMIT; ph[k].node = i; ph[k].nchunk = chunks; k++; }
    }
    nph = k;
    for (k = 0; k < nph; k++) { atomic_init(&ph[k].next, 0); atomic_init(&ph[k].done, 0); }
    mv_run r = {p, g, x, out, mv_kernels(isa), ph, nph, times, 0.0};
    double t0 = times ? mv_now() : 0.0;
#ifdef _OPENMP
    if (nth > 1) {
#pragma omp parallel num_threads(nth)
        run_worker(&r, omp_get_thread_num());
    } else
#endif
        run_worker(&r, 0);
    if (times)       /* completion stamps -> per-node durations */
        for (int i = 0; i < g->nnodes; i++) {
            double t1 = (p->mode[i] == MV_MODE_INNER || p->mode[i] == MV_MODE_TAIL) ? t0 : times[i];
            times[i] = t1 - t0;
            t0 = t1;
        }
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
