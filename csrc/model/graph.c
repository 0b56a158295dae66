/* graph.c - graph construction: nodes validated and their weights packed
 * once (mv_graph_set_node), fusable chains marked (mv_graph_finalize).
 * Planning is plan.c, execution exec.c; see graph.h for the life cycle. */
#include <stdlib.h>
#include <string.h>
#include "graph_internal.h"

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
        mv_aligned_free(g->nodes[i].w4);
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
    n.w = n.bias = n.gamma = n.w2 = n.w4 = NULL;
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
            n.w2 = mv_aligned_alloc(mv_conv3x3_wino_packed_floats(2, Cin, n.cout) * sizeof(float));
            n.w4 = mv_aligned_alloc(mv_conv3x3_wino_packed_floats(4, Cin, n.cout) * sizeof(float));
            if (!tmp || !n.w2 || !n.w4) {
                mv_aligned_free(tmp); mv_aligned_free(n.w); mv_aligned_free(n.w2); mv_aligned_free(n.w4);
                return MV_ERR_NOMEM;
            }
            mv_pack_conv3x3_wino_weights(2, w, n.cout, Cin, tmp, n.w2);
            mv_pack_conv3x3_wino_weights(4, w, n.cout, Cin, tmp, n.w4);
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
    case MV_OP_GLOBAL_AVG_POOL:
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
        e->chain = mv_node_is_pointwise(e) && !e->p.conv.residual && e->nin == 1 &&
                   d->op == MV_OP_DWCONV && d->in[0] == i + 1 &&
                   mv_node_is_pointwise(p) && p->in[0] == i + 2 && p->p.conv.act == MV_ACT_NONE && res_ok &&
                   readers(g, i + 1) == 1 && readers(g, i + 2) == 1;
    }
    g->zero = mv_aligned_alloc((size_t)(g->max_cin + 16) * sizeof(float));
    if (!g->zero) return MV_ERR_NOMEM;
    memset(g->zero, 0, (size_t)(g->max_cin + 16) * sizeof(float));
    return MV_OK;
}
