/* graph.h - a network as a list of coarse, fused nodes, and the per-shape
 * plan that runs it.
 *
 * Life cycle (XNNPACK-like create -> reshape -> run):
 *   mv_graph_new, mv_graph_set_node, mv_graph_finalize      (graph.c)
 *                     nodes validated, weights copied (BatchNorm already
 *                     folded by the caller) and packed once for the kernels,
 *                     fusable chains marked;
 *   mv_plan_init      (plan.c) for one input shape (B, H, W) and one set of
 *                     mv_plan_opts: every tensor's shape, the fusion choice,
 *                     one arena laid out by tensor liveness, scratch sizes;
 *   mv_plan_run       (exec.c) one OpenMP parallel region for the whole
 *                     network; the workers claim chunks of each node.
 * Which plan a call uses, and when plans are made, cached and freed, is the
 * run policy of model/session.h.
 * Fusion: mv_graph_finalize marks expand -> depthwise -> project chains
 * (inverted residual blocks); a plan runs a chain as one mv_invres node when
 * its expanded map is large enough to fall out of cache
 * (mv_plan_opts.fuse_min_bytes), and its two inner tensors then take no
 * memory.
 * A plan and its arena belong to one call at a time; the graph is immutable
 * after mv_graph_finalize and can be shared by any number of concurrent plans.
 *
 * Tensors: id 0 is the network input (NHWC copy of the NCHW argument);
 * node i produces tensor i + 1.  All tensors are NHWC float32. */
#ifndef MV_GRAPH_H
#define MV_GRAPH_H

#include "../ops/ops.h"

typedef enum {
    MV_OP_CONV = 1,       /* in: x [, x2 concat] [, residual]; KxK or 1x1 */
    MV_OP_DWCONV = 2,     /* in: x; depthwise 3x3 */
    MV_OP_LAYERNORM = 3,  /* in: x; over channels of each pixel */
    MV_OP_ATTENTION = 4,  /* in: qkv (3D channels) -> D channels */
    MV_OP_RESIZE = 5,     /* in: x [, like]; bilinear to even size / like's size */
    MV_OP_GLOBAL_AVG_POOL = 6,        /* in: x -> [B, 1, 1, C] */
    MV_OP_ADD = 7,        /* in: a, b */
    MV_OP_ACT = 8,        /* in: x */
    MV_OP_GROUPNORM1 = 9, /* in: x; GroupNorm(1, C) per image */
    MV_OP_CONCAT = 10,    /* in: a, b */
    MV_OP_SEP_ATTENTION = 11, /* in: qkv (1 + 2D channels) -> D; MobileViTv2 */
    MV_OP_CROP_PAD = 12,  /* in: x [, like]; mode 0: crop to a multiple of (ph, pw); 1: zero-pad to like */
} mv_op;

#define MV_MAX_IN 3

/* Default for mv_graph.fuse_min_bytes.  A smaller expanded map stays in L2
 * between the three separate kernels, and fusing it only adds edge-row
 * recomputation when a node is split across workers (MobileViT-S, batch 1,
 * 2 threads: 9.4 ms fused above 256 KiB, 11.9 ms never fused). */
#define MV_FUSE_MIN_BYTES ((size_t)256 * 1024)

/* Per-op parameters: the tagged union of mv_node (XNNPACK-style subgraph
 * nodes).  Field names are the names the binding reads from Python
 * (binding/graph.c's node tables), so a node is written as named fields end to
 * end.  Sizes are output-pixel based; "act" is an mv_act. */
typedef struct {
    int kh, kw, stride, pad, dilation, act;
    int concat;        /* in[1] is concatenated to in[0] on channels (2-input 3x3 fusion conv) */
    int residual;      /* the last input is added after the activation */
} mv_conv_params;
typedef struct { int stride, pad, dilation, act; } mv_dwconv_params;   /* 3x3 */
typedef struct { float eps; } mv_norm_params;                          /* layernorm, groupnorm1 */
typedef struct { int heads, patch_h, patch_w; float scale; } mv_attention_params;
typedef struct { int patch_h, patch_w; } mv_sep_attention_params;
typedef struct {
    int like;          /* 1: to in[1]'s size; 0: up to multiples of (multiple_h, multiple_w) */
    int multiple_h, multiple_w, align_corners;
} mv_resize_params;
typedef struct {
    int like;          /* 1: zero-pad to in[1]'s size; 0: crop to multiples of (multiple_h, multiple_w) */
    int multiple_h, multiple_w;
} mv_crop_pad_params;
typedef struct { int act; } mv_act_params;

typedef struct {
    mv_op op;
    int nin;
    int in[MV_MAX_IN];
    int cout;             /* output channels */
    union {
        mv_conv_params conv;
        mv_dwconv_params dwconv;
        mv_norm_params norm;
        mv_attention_params attention;
        mv_sep_attention_params sep_attention;
        mv_resize_params resize;
        mv_crop_pad_params crop_pad;
        mv_act_params act;
    } p;
    /* set by mv_graph_set_node / mv_graph_finalize */
    float *w;             /* packed weights (conv, dwconv) */
    float *bias;          /* conv/dwconv bias; norm beta */
    float *gamma;         /* norm gamma */
    float *w2;            /* conv 3x3 / stride 1 / pad 1: F(2x2, 3x3) Winograd-packed weights, else NULL */
    float *w4;            /* the same for F(4x4, 3x3) (set together with w2) */
    int chain;            /* this node starts an expand 1x1 -> dw 3x3 ->
                             project 1x1 chain whose inner tensors nothing
                             else reads (fusable) */
} mv_node;

typedef struct {
    int nnodes;
    mv_node *nodes;
    int in_channels;
    int max_cin;          /* for the zero row used by padded conv taps */
    float *zero;
} mv_graph;

/* How a plan runs the graph: algorithm and fusion choices, which never
 * change results beyond a few ulp (Winograd) or at all (fusion).  A plan
 * copies these when it is made, so a setting changed while other threads
 * run only affects plans made afterwards: every run uses one consistent
 * setting, the old or the new. */
typedef struct {
    size_t fuse_min_bytes; /* fuse a chain when its expanded map has at least
                              this many bytes per image (SIZE_MAX: never) */
    int winograd;          /* run eligible 3x3 convs (w2 != NULL) by Winograd */
} mv_plan_opts;

/* The defaults: fuse above MV_FUSE_MIN_BYTES, Winograd on. */
mv_plan_opts mv_plan_opts_default(void);

typedef struct {
    int B, H, W, C;
    size_t offset;        /* floats from arena start */
    int root;             /* storage owner (aliases of identity resizes) */
} mv_tensor_info;

/* How a plan runs a node.  A fused chain is HEAD (runs all three as
 * mv_invres; its output is not stored), INNER (not run, output not stored),
 * TAIL (not run, output stored: the chain's result). */
typedef enum { MV_MODE_ALONE = 0, MV_MODE_HEAD = 1, MV_MODE_INNER = 2, MV_MODE_TAIL = 3 } mv_node_mode;

typedef struct {
    int B, H, W;          /* input shape this plan was made for */
    int nth;              /* worker count the scratch was sized for */
    mv_plan_opts opts;    /* the choices this plan was made with */
    int ntensors;
    mv_tensor_info *t;
    size_t arena_floats;
    size_t scratch_offset;     /* per-worker attention scratch */
    size_t scratch_per_worker;
    unsigned char *mode;       /* per node, mv_node_mode */
    float *arena;
} mv_plan;

/* Outputs requested by a run: tensor ids and NCHW destination buffers
 * (logits are [B, C, 1, 1] == [B, C]). */
typedef struct {
    int n;
    const int *ids;
    float **dst;
} mv_outputs;

mv_graph *mv_graph_new(int nnodes, int in_channels);
/* Validates the node (input ids < producing index, channel agreement) and
 * packs its weights.  w: PyTorch layout ([Cout, Cin, kh, kw]; dw [C,1,3,3]). */
mv_status mv_graph_set_node(mv_graph *g, int index, const mv_node *spec,
                            const float *w, const float *bias,
                            const float *gamma, char *err, size_t errlen);
mv_status mv_graph_finalize(mv_graph *g, char *err, size_t errlen);
void mv_graph_free(mv_graph *g);
int mv_graph_tensor_channels(const mv_graph *g, int id);

/* Shapes + arena layout for `opts`; allocates the arena unless dry_run.
 * Returns MV_ERR_ARG with a message for shapes the graph cannot take. */
mv_status mv_plan_init(mv_plan *p, const mv_graph *g, int B, int H, int W,
                       int nth, const mv_plan_opts *opts, int dry_run,
                       char *err, size_t errlen);
/* Allocates the arena of a plan made with dry_run (no-op if it has one). */
mv_status mv_plan_alloc(mv_plan *p, char *err, size_t errlen);
void mv_plan_release(mv_plan *p);
/* Whether tensor id exists in memory in this plan (tensors inside a fused
 * chain never do, so they cannot be requested as outputs). */
int mv_plan_tensor_stored(const mv_plan *p, int id);
size_t mv_plan_bytes(const mv_plan *p);

/* x: NCHW [B, in_channels, H, W]. */
mv_status mv_plan_run(mv_plan *p, const mv_graph *g, const float *x,
                      const mv_outputs *out, int nth, mv_isa isa);
/* What a profiled run records (either pointer may be NULL):
 * node_seconds[i]  wall time of node i, g->nnodes entries (the input layout
 *                  change is not timed; nodes inside a fused block get 0);
 * worker[w]        for each of the nth workers: seconds inside chunks
 *                  (busy), seconds waiting for the previous phase to finish
 *                  (wait, including the wait at the end of the run), and
 *                  the number of chunks it ran. */
typedef struct { double busy, wait, chunks; } mv_worker_stats;
typedef struct {
    double *node_seconds;
    mv_worker_stats *worker;
} mv_profile;

/* Same, recording into prof (NULL: not profiled). */
mv_status mv_plan_run_timed(mv_plan *p, const mv_graph *g, const float *x,
                            const mv_outputs *out, int nth, mv_isa isa,
                            const mv_profile *prof);

/* Throughput mode: images [0, nimg) of x, each run as a whole single-image
 * forward by one worker (no synchronisation between layers, activations of
 * one image stay in cache).  plans[w] is worker w's plan for B = 1 at this
 * H, W (nth = 1).  Images are claimed dynamically; every image's result is
 * bit-identical to the layer-parallel path. */
mv_status mv_plan_run_images(mv_plan *plans, int nplans, const mv_graph *g,
                             const float *x, int nimg, const mv_outputs *out,
                             mv_isa isa);
/* Floats per image of tensor `id` in a plan (C * H * W). */
size_t mv_plan_image_floats(const mv_plan *p, int id);

#endif /* MV_GRAPH_H */
