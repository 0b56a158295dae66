/* graph.c - the Graph type: a network built from named-field node
 * descriptions, run through the session layer (model/session.h), which owns
 * the run policy; these methods only parse, release the GIL and map status. */
#include "binding.h"

/* The run policy (modes, plan cache, locking, memory cap) is mv_session's
 * (model/session.h); these methods parse, release the GIL and map status. */

typedef struct {
    PyObject_HEAD
    mv_session *s;
} GraphObject;

#define GRAPH_READY(self) \
    do { if (!(self)->s) { PyErr_SetString(PyExc_RuntimeError, "Graph not initialised"); return NULL; } } while (0)

static void Graph_dealloc(GraphObject *self) {
    mv_session_free(self->s);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int int_tuple(PyObject *o, int *out, int n, const char *what) {
    PyObject *seq = PySequence_Fast(o, what);
    if (!seq) return -1;
    Py_ssize_t len = PySequence_Fast_GET_SIZE(seq);
    if (len > n) { PyErr_Format(PyExc_ValueError, "%s: at most %d values", what, n); Py_DECREF(seq); return -1; }
    for (Py_ssize_t i = 0; i < len; i++) {
        long v = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, i));
        if (v == -1 && PyErr_Occurred()) { Py_DECREF(seq); return -1; }
        if (v < -1000000000L || v > 1000000000L) { PyErr_Format(PyExc_ValueError, "%s: value out of range", what); Py_DECREF(seq); return -1; }
        out[i] = (int)v;
    }
    Py_DECREF(seq);
    return (int)len;
}

/* ---- node descriptions -------------------------------------------------------
 * A node arrives from Python as a dict of named fields: "op" (a name from
 * _C.OPS), "inputs" (tensor ids), "cout", "weight" / "bias" / "gamma" (arrays
 * or None) and the op's own parameters, whose names are the member names of
 * its mv_<op>_params struct (graph.h), listed per op in _C.OP_FIELDS.  The
 * tables below are the one place that maps a name to a struct member. */
typedef struct { const char *name; size_t offset; char type; } node_field;   /* type: 'i' int, 'f' float */
#define NF_I(u, f) {#f, offsetof(mv_node, p.u.f), 'i'}
#define NF_F(u, f) {#f, offsetof(mv_node, p.u.f), 'f'}
static const node_field conv_fields[] = {NF_I(conv, kh), NF_I(conv, kw), NF_I(conv, stride), NF_I(conv, pad),
    NF_I(conv, dilation), NF_I(conv, act), NF_I(conv, concat), NF_I(conv, residual), {NULL, 0, 0}};
static const node_field dwconv_fields[] = {NF_I(dwconv, stride), NF_I(dwconv, pad), NF_I(dwconv, dilation),
    NF_I(dwconv, act), {NULL, 0, 0}};
static const node_field norm_fields[] = {NF_F(norm, eps), {NULL, 0, 0}};
static const node_field attention_fields[] = {NF_I(attention, heads), NF_I(attention, patch_h),
    NF_I(attention, patch_w), NF_F(attention, scale), {NULL, 0, 0}};
static const node_field sep_attention_fields[] = {NF_I(sep_attention, patch_h), NF_I(sep_attention, patch_w),
    {NULL, 0, 0}};
static const node_field resize_fields[] = {NF_I(resize, like), NF_I(resize, multiple_h), NF_I(resize, multiple_w),
    NF_I(resize, align_corners), {NULL, 0, 0}};
static const node_field crop_pad_fields[] = {NF_I(crop_pad, like), NF_I(crop_pad, multiple_h),
    NF_I(crop_pad, multiple_w), {NULL, 0, 0}};
static const node_field act_fields[] = {NF_I(act, act), {NULL, 0, 0}};
static const node_field no_fields[] = {{NULL, 0, 0}};
#undef NF_I
#undef NF_F

static const struct { mv_op op; const char *name; const node_field *fields; } node_kinds[] = {
    {MV_OP_CONV, "conv", conv_fields},
    {MV_OP_DWCONV, "dwconv", dwconv_fields},
    {MV_OP_LAYERNORM, "layernorm", norm_fields},
    {MV_OP_ATTENTION, "attention", attention_fields},
    {MV_OP_RESIZE, "resize", resize_fields},
    {MV_OP_GLOBAL_AVG_POOL, "global_avg_pool", no_fields},
    {MV_OP_ADD, "add", no_fields},
    {MV_OP_ACT, "act", act_fields},
    {MV_OP_GROUPNORM1, "groupnorm1", norm_fields},
    {MV_OP_CONCAT, "concat", no_fields},
    {MV_OP_SEP_ATTENTION, "sep_attention", sep_attention_fields},
    {MV_OP_CROP_PAD, "crop_pad", crop_pad_fields},
};
#define N_NODE_KINDS ((int)(sizeof(node_kinds) / sizeof(node_kinds[0])))
static const char *const node_common_keys[] = {"op", "inputs", "cout", "weight", "bias", "gamma", NULL};

static int is_common_key(const char *k) {
    for (int i = 0; node_common_keys[i]; i++) if (!strcmp(k, node_common_keys[i])) return 1;
    return 0;
}

/* Reads node dict `d` (number i) into spec; 0 or -1 with an exception set.
 * *wo, *bo, *go are borrowed (Py_None when absent). */
static int parse_node(PyObject *d, Py_ssize_t i, mv_node *spec, PyObject **wo, PyObject **bo, PyObject **go) {
    if (!PyDict_Check(d)) { PyErr_Format(PyExc_TypeError, "Graph: node %zd must be a dict of named fields", i); return -1; }
    PyObject *op = PyDict_GetItemString(d, "op");
    if (!op || !PyUnicode_Check(op)) { PyErr_Format(PyExc_ValueError, "Graph: node %zd needs an 'op' name (see _C.OPS)", i); return -1; }
    const char *opname = PyUnicode_AsUTF8(op);
    if (!opname) return -1;
    int kind = -1;
    for (int k = 0; k < N_NODE_KINDS; k++) if (!strcmp(opname, node_kinds[k].name)) kind = k;
    if (kind < 0) { PyErr_Format(PyExc_ValueError, "Graph: node %zd has unknown op '%s'", i, opname); return -1; }
    const node_field *fields = node_kinds[kind].fields;
    spec->op = node_kinds[kind].op;
    /* every key must be a common one or a field of this op (a typo is an error, not a zero) */
    PyObject *key, *val;
    Py_ssize_t pos = 0;
    while (PyDict_Next(d, &pos, &key, &val)) {
        const char *k = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
        if (!k) { if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "Graph: node %zd has a non-string key", i); return -1; }
        int known = is_common_key(k);
        for (const node_field *f = fields; !known && f->name; f++) known = !strcmp(k, f->name);
        if (!known) { PyErr_Format(PyExc_ValueError, "Graph: node %zd (%s) has no field '%s'", i, opname, k); return -1; }
    }
    for (const node_field *f = fields; f->name; f++) {
        PyObject *v = PyDict_GetItemString(d, f->name);
        if (!v) { PyErr_Format(PyExc_ValueError, "Graph: node %zd (%s) needs field '%s'", i, opname, f->name); return -1; }
        char *dst = (char *)spec + f->offset;
        if (f->type == 'f') {
            double x = PyFloat_AsDouble(v);
            if (x == -1.0 && PyErr_Occurred()) return -1;
            *(float *)dst = (float)x;
        } else {
            long x = PyLong_AsLong(v);
            if (x == -1 && PyErr_Occurred()) return -1;
            if (x < -1000000000L || x > 1000000000L) {
                PyErr_Format(PyExc_ValueError, "Graph: node %zd (%s) field '%s' out of range", i, opname, f->name);
                return -1;
            }
            *(int *)dst = (int)x;
        }
    }
    PyObject *ins = PyDict_GetItemString(d, "inputs"), *cout = PyDict_GetItemString(d, "cout");
    if (!ins) { PyErr_Format(PyExc_ValueError, "Graph: node %zd (%s) needs 'inputs'", i, opname); return -1; }
    int nin = int_tuple(ins, spec->in, MV_MAX_IN, "node inputs");
    if (nin < 0) return -1;
    spec->nin = nin;
    spec->cout = 0;
    if (cout) {
        long c = PyLong_AsLong(cout);
        if (c == -1 && PyErr_Occurred()) return -1;
        if (c < 0 || c > 1000000) { PyErr_Format(PyExc_ValueError, "Graph: node %zd (%s): cout %ld out of range", i, opname, c); return -1; }
        spec->cout = (int)c;
    }
    *wo = PyDict_GetItemString(d, "weight");
    *bo = PyDict_GetItemString(d, "bias");
    *go = PyDict_GetItemString(d, "gamma");
    if (!*wo) *wo = Py_None;
    if (!*bo) *bo = Py_None;
    if (!*go) *go = Py_None;
    return 0;
}

/* _C.OPS {name: code} and _C.OP_FIELDS {name: (field, ...)} for Python. */
static int add_node_tables(PyObject *m) {
    PyObject *ops = PyDict_New(), *fields = PyDict_New();
    if (!ops || !fields) goto fail;
    for (int k = 0; k < N_NODE_KINDS; k++) {
        PyObject *code = PyLong_FromLong(node_kinds[k].op);
        int n = 0;
        while (node_kinds[k].fields[n].name) n++;
        PyObject *names = PyTuple_New(n);
        if (!code || !names) { Py_XDECREF(code); Py_XDECREF(names); goto fail; }
        for (int j = 0; j < n; j++) {
            PyObject *s = PyUnicode_FromString(node_kinds[k].fields[j].name);
            if (!s) { Py_DECREF(code); Py_DECREF(names); goto fail; }
            PyTuple_SET_ITEM(names, j, s);
        }
        int bad = PyDict_SetItemString(ops, node_kinds[k].name, code) < 0 ||
                  PyDict_SetItemString(fields, node_kinds[k].name, names) < 0;
        Py_DECREF(code); Py_DECREF(names);
        if (bad) goto fail;
    }
    if (PyModule_AddObject(m, "OPS", ops) < 0) goto fail;
    ops = NULL;
    if (PyModule_AddObject(m, "OP_FIELDS", fields) < 0) goto fail;
    return 0;
fail:
    Py_XDECREF(ops); Py_XDECREF(fields);
    return -1;
}

static int build_graph(mv_graph *g, PyObject *nodes, Py_ssize_t nn, char *err, size_t errlen);

/* Graph(in_channels, nodes): nodes is a list of node dicts (see parse_node). */
static int Graph_init(GraphObject *self, PyObject *args, PyObject *kw) {
    int in_ch;
    PyObject *nodes;
    char err[256] = "";
    if (!PyArg_ParseTuple(args, "iO!", &in_ch, &PyList_Type, &nodes)) return -1;
    if (self->s) { PyErr_SetString(PyExc_RuntimeError, "Graph already initialised"); return -1; }
    Py_ssize_t nn = PyList_GET_SIZE(nodes);
    if (in_ch < 1 || nn < 1 || nn > 100000) { PyErr_SetString(PyExc_ValueError, "Graph: need in_channels >= 1 and 1..100000 nodes"); return -1; }
    mv_graph *g = mv_graph_new((int)nn, in_ch);
    if (!g) { PyErr_NoMemory(); return -1; }
    int rc = build_graph(g, nodes, nn, err, sizeof(err));
    if (rc == 0) {
        self->s = mv_session_new(g);         /* owns g from here, also on failure */
        if (!self->s) { PyErr_NoMemory(); return -1; }
        return 0;
    }
    mv_graph_free(g);
    return -1;
}

/* Parses and packs every node, then finalizes; 0 or -1 with an exception. */
static int build_graph(mv_graph *g, PyObject *nodes, Py_ssize_t nn, char *err, size_t errlen) {
    for (Py_ssize_t i = 0; i < nn; i++) {
        PyObject *wo, *bo, *go;
        mv_node spec;
        memset(&spec, 0, sizeof(spec));
        if (parse_node(PyList_GET_ITEM(nodes, i), i, &spec, &wo, &bo, &go) < 0) return -1;
        int nin = spec.nin;
        for (int k = 0; k < nin; k++)
            if (spec.in[k] < 0 || spec.in[k] > i) { PyErr_Format(PyExc_ValueError, "Graph: node %zd reads tensor %d, not yet computed", i, spec.in[k]); return -1; }
        /* expected parameter sizes */
        size_t wn = 0, cn = 0;
        int c0 = nin > 0 ? mv_graph_tensor_channels(g, spec.in[0]) : 0;
        if (spec.op == MV_OP_CONV) {
            const mv_conv_params *c = &spec.p.conv;
            int cin = c0 + (c->concat && nin > 1 ? mv_graph_tensor_channels(g, spec.in[1]) : 0);
            if (spec.cout < 1 || c->kh < 1 || c->kw < 1 || c->kh > 64 || c->kw > 64) {
                PyErr_Format(PyExc_ValueError, "Graph: node %zd has a bad conv shape", i); return -1;
            }
            wn = (size_t)spec.cout * cin * c->kh * c->kw;
            cn = (size_t)spec.cout;
        } else if (spec.op == MV_OP_DWCONV) {
            wn = (size_t)9 * c0; cn = (size_t)c0;
        } else if (spec.op == MV_OP_LAYERNORM || spec.op == MV_OP_GROUPNORM1) {
            cn = (size_t)c0;
        }
        PyArrayObject *W = NULL, *Bi = NULL, *G = NULL;
        int bad = 0;
        if (wn) { W = as_f32(wo, -1, "weight"); bad = !W || (size_t)PyArray_SIZE(W) != wn; }
        if (!bad && bo != Py_None) { Bi = as_f32(bo, 1, "bias"); bad = !Bi || (size_t)PyArray_SIZE(Bi) != cn; }
        if (!bad && go != Py_None) { G = as_f32(go, 1, "gamma"); bad = !G || (size_t)PyArray_SIZE(G) != cn; }
        if (!bad && (spec.op == MV_OP_LAYERNORM || spec.op == MV_OP_GROUPNORM1) && (!G || !Bi)) bad = 1;
        mv_status st = MV_ERR_ARG;
        if (!bad) {
            Py_BEGIN_ALLOW_THREADS
            st = mv_graph_set_node(g, (int)i, &spec, W ? F(W) : NULL, Bi ? F(Bi) : NULL, G ? F(G) : NULL, err, errlen);
            Py_END_ALLOW_THREADS
        } else if (!PyErr_Occurred()) {
            snprintf(err, errlen, "Graph: node %zd (op %d) parameters have the wrong size (weight %zu, per-channel %zu expected)", i, spec.op, wn, cn);
        }
        Py_XDECREF(W); Py_XDECREF(Bi); Py_XDECREF(G);
        if (PyErr_Occurred()) return -1;
        if (st != MV_OK) { set_status_error(st, err); return -1; }
    }
    mv_status st = mv_graph_finalize(g, err, errlen);
    if (st != MV_OK) { set_status_error(st, err); return -1; }
    return 0;
}

static PyObject *Graph_new(PyTypeObject *type, PyObject *args, PyObject *kw) {
    GraphObject *self = (GraphObject *)type->tp_alloc(type, 0);
    if (self) self->s = NULL;
    return (PyObject *)self;
}

/* Whether every float is finite (bit test: no FP exceptions, any MXCSR). */
static int all_finite(const float *x, size_t n) {
    const uint32_t *u = (const uint32_t *)x;
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) bad |= (uint32_t)((u[i] & 0x7f800000u) == 0x7f800000u);
    return !bad;
}

/* run(x[B,C,H,W], output_ids, num_threads=0, profile=None, check_finite=False)
 * -> list of NCHW arrays.  The call is planned (or its cached plan found) and
 * checked against the activation cap before the input is converted or any
 * output is allocated. */
static PyObject *Graph_run(GraphObject *self, PyObject *args) {
    PyObject *xo, *ids_o, *prof = NULL, *wprof = NULL;
    long long nth_arg = 0;
    int check_finite = 0;
    char err[256] = "";
    if (!PyArg_ParseTuple(args, "OO|LOpO", &xo, &ids_o, &nth_arg, &prof, &check_finite, &wprof)) return NULL;
    GRAPH_READY(self);
    if (nth_arg < 0 || nth_arg > MV_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "num_threads must be between 1 and %d (0: the module setting), got %lld",
                     MV_MAX_THREADS, nth_arg);
        return NULL;
    }
    if (prof == Py_None) prof = NULL;
    if (prof && !PyList_Check(prof)) { PyErr_SetString(PyExc_TypeError, "profile must be a list"); return NULL; }
    if (wprof == Py_None) wprof = NULL;
    if (wprof && !PyList_Check(wprof)) { PyErr_SetString(PyExc_TypeError, "workers must be a list"); return NULL; }
    if (wprof && !prof) { PyErr_SetString(PyExc_ValueError, "workers needs profile (a list) too"); return NULL; }
    int ids[MV_SESSION_MAX_OUT];
    int nout = int_tuple(ids_o, ids, MV_SESSION_MAX_OUT, "output ids");
    if (nout < 0) return NULL;
    /* shape first, from the array as given: nothing is converted or
     * allocated before the call is planned and checked against the cap */
    PyArrayObject *X = NULL;
    if (!PyArray_Check(xo)) {
        X = as_f32(xo, 4, "x");
        if (!X) return NULL;
    }
    PyArrayObject *view = X ? X : (PyArrayObject *)xo;
    if (PyArray_NDIM(view) != 4) {
        PyErr_Format(PyExc_ValueError, "x: expected 4 dimensions (NCHW), got %d", PyArray_NDIM(view));
        Py_XDECREF(X);
        return NULL;
    }
    npy_intp *d = PyArray_DIMS(view);
    const mv_graph *g = self->s->g;
    if (d[1] != g->in_channels) {
        PyErr_Format(PyExc_ValueError, "expected %d input channels (NCHW), got %ld", g->in_channels, (long)d[1]);
        Py_XDECREF(X);
        return NULL;
    }
    if (d[0] > INT_MAX || d[2] > INT_MAX || d[3] > INT_MAX) {
        PyErr_SetString(PyExc_ValueError, "x: every dimension must be below 2**31");
        Py_XDECREF(X);
        return NULL;
    }
    int B = (int)d[0], H = (int)d[2], W = (int)d[3];
    int nth = parse_threads((int)nth_arg);
    mv_call call;
    mv_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mv_session_begin(self->s, &call, B, H, W, nth, ids, nout, prof != NULL, atomic_load(&g_forked_child), err,
                          sizeof(err));
    Py_END_ALLOW_THREADS
    if (st != MV_OK) { set_status_error(st, err); Py_XDECREF(X); return NULL; }
    PyObject *outs = NULL;
    double *times = NULL;
    mv_worker_stats *wstats = NULL;
    float *dst[MV_SESSION_MAX_OUT];
    if (!X) {   /* float32, C-contiguous, aligned (a copy only when it is not already) */
        X = (PyArrayObject *)PyArray_FromAny(xo, PyArray_DescrFromType(NPY_FLOAT32), 4, 4,
                                             NPY_ARRAY_IN_ARRAY | NPY_ARRAY_FORCECAST, NULL);
        if (!X) goto fail;
    }
    if (!(outs = PyList_New(nout))) goto fail;
    for (int k = 0; k < nout; k++) {
        npy_intp dims[4] = {call.out[k].B, call.out[k].C, call.out[k].H, call.out[k].W};
        PyObject *a = PyArray_SimpleNew(4, dims, NPY_FLOAT32);
        if (!a) goto fail;
        PyList_SET_ITEM(outs, k, a);
        dst[k] = (float *)PyArray_DATA((PyArrayObject *)a);
    }
    if (prof && B > 0 && !(times = calloc((size_t)g->nnodes, sizeof(double)))) { PyErr_NoMemory(); goto fail; }
    if (wprof && B > 0 && !(wstats = calloc((size_t)call.nth, sizeof *wstats))) { PyErr_NoMemory(); goto fail; }
    mv_profile profile = {.node_seconds = times, .worker = wstats};
    int finite = 1;
    if (nth > 1 && B > 0) atomic_store(&g_omp_used, 1);
    Py_BEGIN_ALLOW_THREADS
    if (check_finite) finite = all_finite(F(X), (size_t)PyArray_SIZE(X));
    st = finite ? mv_session_run(&call, F(X), dst, (mv_isa)atomic_load(&g_isa), times ? &profile : NULL) : MV_OK;
    Py_END_ALLOW_THREADS
    if (!finite) {
        PyErr_SetString(PyExc_ValueError, "input contains NaN or Inf (pass check_finite=False to propagate them)");
        goto fail;
    }
    if (st != MV_OK) { set_status_error(st, err); goto fail; }
    for (int i = 0; times && i < g->nnodes; i++) {
        PyObject *f = PyFloat_FromDouble(times[i]);
        if (!f || PyList_Append(prof, f) < 0) { Py_XDECREF(f); goto fail; }
        Py_DECREF(f);
    }
    for (int w = 0; wstats && w < call.nth; w++) {
        PyObject *t = Py_BuildValue("(ddi)", wstats[w].busy, wstats[w].wait, (int)wstats[w].chunks);
        if (!t || PyList_Append(wprof, t) < 0) { Py_XDECREF(t); goto fail; }
        Py_DECREF(t);
    }
    free(times);
    free(wstats);
    Py_DECREF(X);
    mv_session_end(&call);
    return outs;
fail:
    free(times);
    free(wstats);
    Py_XDECREF(X);
    Py_XDECREF(outs);
    mv_session_end(&call);
    return NULL;
}

/* plan_bytes(B, H, W, num_threads=0) -> activation bytes a call of that shape allocates */
static PyObject *Graph_plan_bytes(GraphObject *self, PyObject *args) {
    int B, H, W, nth = 0;
    char err[256] = "";
    if (!PyArg_ParseTuple(args, "iii|i", &B, &H, &W, &nth)) return NULL;
    GRAPH_READY(self);
    if (check_threads_arg(nth) < 0) return NULL;
    if (B < 1 || H < 1 || W < 1) { PyErr_SetString(PyExc_ValueError, "plan_bytes: B, H and W must be >= 1"); return NULL; }
    size_t b;
    mv_status st;
    Py_BEGIN_ALLOW_THREADS
    st = mv_session_bytes(self->s, B, H, W, parse_threads(nth), &b, err, sizeof(err));
    Py_END_ALLOW_THREADS
    if (st != MV_OK) { set_status_error(st, err); return NULL; }
    return PyLong_FromSize_t(b);
}

/* node_modes(B, H, W) -> how a plan for that input runs each node
 * (_C.MODE_ALONE, MODE_FUSED_HEAD runs the whole block, MODE_FUSED_INNER /
 * MODE_FUSED_TAIL are inside one: not run, TAIL = the block's output). */
static PyObject *Graph_node_modes(GraphObject *self, PyObject *args) {
    int B, H, W;
    char err[256] = "";
    if (!PyArg_ParseTuple(args, "iii", &B, &H, &W)) return NULL;
    GRAPH_READY(self);
    const mv_plan_opts opts = mv_session_opts(self->s);
    mv_plan p;
    mv_status st = mv_plan_init(&p, self->s->g, B, H, W, 1, &opts, 1, err, sizeof(err));
    if (st != MV_OK) { set_status_error(st, err); return NULL; }
    PyObject *l = PyList_New(self->s->g->nnodes);
    for (int i = 0; l && i < self->s->g->nnodes; i++) {
        PyObject *v = PyLong_FromLong(p.mode[i]);
        if (!v) { Py_CLEAR(l); break; }
        PyList_SET_ITEM(l, i, v);
    }
    mv_plan_release(&p);
    return l;
}

static PyObject *Graph_set_max_bytes(GraphObject *self, PyObject *args) {
    unsigned long long b;
    if (!PyArg_ParseTuple(args, "K", &b)) return NULL;
    GRAPH_READY(self);
    mv_session_set_max_bytes(self->s, (size_t)b);
    Py_RETURN_NONE;
}

static PyObject *Graph_get_max_bytes(GraphObject *self, PyObject *noargs) {
    GRAPH_READY(self);
    return PyLong_FromSize_t(mv_session_max_bytes(self->s));
}

static void drop_plans_nogil(mv_session *s) {
    Py_BEGIN_ALLOW_THREADS
    mv_session_drop_plans(s);
    Py_END_ALLOW_THREADS
}

/* set_fusion(min_bytes): fuse inverted residual chains whose expanded map
 * has at least min_bytes per image; -1 never fuses.  Frees cached plans. */
static PyObject *Graph_set_fusion(GraphObject *self, PyObject *args) {
    long long b;
    if (!PyArg_ParseTuple(args, "L", &b)) return NULL;
    GRAPH_READY(self);
    if (b < -1) { PyErr_SetString(PyExc_ValueError, "set_fusion: min_bytes must be >= 0, or -1 for never"); return NULL; }
    mv_session_set_fusion(self->s, b < 0 ? SIZE_MAX : (size_t)b);
    drop_plans_nogil(self->s);
    Py_RETURN_NONE;
}

static PyObject *Graph_get_fusion(GraphObject *self, PyObject *noargs) {
    GRAPH_READY(self);
    size_t b = mv_session_opts(self->s).fuse_min_bytes;
    return b == SIZE_MAX ? PyLong_FromLong(-1) : PyLong_FromSize_t(b);
}

/* set_winograd(on): run eligible 3x3 convs by Winograd (default) or by
 * implicit GEMM; both weight packings exist, nothing is rebuilt. */
static PyObject *Graph_set_winograd(GraphObject *self, PyObject *args) {
    int on;
    if (!PyArg_ParseTuple(args, "p", &on)) return NULL;
    GRAPH_READY(self);
    mv_session_set_winograd(self->s, on);
    Py_RETURN_NONE;
}

static PyObject *Graph_get_winograd(GraphObject *self, PyObject *noargs) {
    GRAPH_READY(self);
    return PyBool_FromLong(mv_session_opts(self->s).winograd);
}

static PyObject *Graph_release(GraphObject *self, PyObject *noargs) {
    GRAPH_READY(self);
    drop_plans_nogil(self->s);
    Py_RETURN_NONE;
}

static PyMethodDef Graph_methods[] = {
    {"run", (PyCFunction)Graph_run, METH_VARARGS, "run(x_nchw, output_ids, num_threads=0, profile=None, check_finite=False, workers=None) -> list of NCHW arrays; profile: a list that receives each node's seconds; workers: a list that receives (busy_s, wait_s, chunks) per worker"},
    {"plan_bytes", (PyCFunction)Graph_plan_bytes, METH_VARARGS, "plan_bytes(B, H, W, num_threads=0) -> activation bytes a call of that shape allocates"},
    {"node_modes", (PyCFunction)Graph_node_modes, METH_VARARGS, "node_modes(B, H, W) -> per node: MODE_ALONE, MODE_FUSED_HEAD, MODE_FUSED_INNER or MODE_FUSED_TAIL"},
    {"set_max_bytes", (PyCFunction)Graph_set_max_bytes, METH_VARARGS, "cap on activation bytes (0 = none)"},
    {"release", (PyCFunction)Graph_release, METH_NOARGS, "free the cached activation arena"},
    {"set_winograd", (PyCFunction)Graph_set_winograd, METH_VARARGS, "set_winograd(on): eligible 3x3 convs by Winograd F(4x4,3x3) / F(2x2,3x3) by map size (default) or implicit GEMM"},
    {"get_fusion", (PyCFunction)Graph_get_fusion, METH_NOARGS, "get_fusion() -> the set_fusion threshold (-1: never)"},
    {"get_winograd", (PyCFunction)Graph_get_winograd, METH_NOARGS, "get_winograd() -> whether eligible 3x3 convs use Winograd"},
    {"get_max_bytes", (PyCFunction)Graph_get_max_bytes, METH_NOARGS, "get_max_bytes() -> the activation cap (0: none)"},
    {"set_fusion", (PyCFunction)Graph_set_fusion, METH_VARARGS, "set_fusion(min_bytes): run expand/depthwise/project chains as one fused block when the expanded map has >= min_bytes per image; -1: never"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GraphType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mobilevit._C.Graph",
    .tp_basicsize = sizeof(GraphObject),
    .tp_dealloc = (destructor)Graph_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A compiled network: packed weights plus a per-shape plan.",
    .tp_methods = Graph_methods,
    .tp_init = (initproc)Graph_init,
    .tp_new = Graph_new,
};

int mv_graph_type_add(PyObject *m) {
    if (PyType_Ready(&GraphType) < 0) return -1;
    Py_INCREF(&GraphType);
    if (PyModule_AddObject(m, "Graph", (PyObject *)&GraphType) < 0) { Py_DECREF(&GraphType); return -1; }
    if (add_node_tables(m) < 0 ||
        PyModule_AddIntConstant(m, "MODE_ALONE", MV_MODE_ALONE) < 0 ||
        PyModule_AddIntConstant(m, "MODE_FUSED_HEAD", MV_MODE_HEAD) < 0 ||
        PyModule_AddIntConstant(m, "MODE_FUSED_INNER", MV_MODE_INNER) < 0 ||
        PyModule_AddIntConstant(m, "MODE_FUSED_TAIL", MV_MODE_TAIL) < 0)
        return -1;
    PyObject *fuse = PyLong_FromSize_t(MV_FUSE_MIN_BYTES);
    if (!fuse || PyModule_AddObject(m, "FUSE_MIN_BYTES", fuse) < 0) { Py_XDECREF(fuse); return -1; }
    return 0;
}
