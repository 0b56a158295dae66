/* graph_internal.h - helpers shared by graph build (graph.c), planning
 * (plan.c) and execution (exec.c); not part of the C core's interface. */
#ifndef MV_GRAPH_INTERNAL_H
#define MV_GRAPH_INTERNAL_H
#include <stdio.h>
#include "graph.h"

#define ERR(...) do { if (err) snprintf(err, errlen, __VA_ARGS__); } while (0)

/* A 1x1 / stride-1 / unpadded single-input conv: a GEMM over pixels. */
static inline int mv_node_is_pointwise(const mv_node *n) {
    const mv_conv_params *c = &n->p.conv;
    return n->op == MV_OP_CONV && c->kh == 1 && c->kw == 1 && c->stride == 1 && c->pad == 0 && !c->concat;
}

/* Output rows per group of a fused chain: enough pixels for full GEMM tiles. */
static inline int mv_invres_group_rows(int OH, int OW) {
    int g = (64 + OW - 1) / OW;
    for (int k = g; k < g + 3; k++)        /* whole 12-row (and 6-row) GEMM tiles when possible */
        if ((k * OW) % 12 == 0) { g = k; break; }
    return MV_MAX(1, MV_MIN(g, OH));
}

#endif /* MV_GRAPH_INTERNAL_H */
