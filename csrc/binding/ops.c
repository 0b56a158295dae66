/* ops.c - single kernels for tests and notebooks (mobilevit.ops): each
 * wrapper converts its arrays, runs one kernel over run_parallel() (one
 * OpenMP region, worker tid of nth computes its static share) and returns
 * the output array. */
#include "binding.h"


typedef struct { const mv_gemm_args *a; mv_gemm_fn f; } gemm_task;
static void gemm_run(void *c, int tid, int nth) { gemm_task *t = c; t->f(t->a, tid, nth); }

/* gemm(a[M,K], w[N,K], bias|None, residual|None, act, isa, nth) -> [M,N] */
static PyObject *py_gemm(PyObject *self, PyObject *args) {
    PyObject *ao, *wo, *bo, *ro;
    int act, isa, nth, e1, e2;
    if (!PyArg_ParseTuple(args, "OOOOiii", &ao, &wo, &bo, &ro, &act, &isa, &nth)) return NULL;
    if (check_isa(isa) < 0) return NULL;
    PyArrayObject *A = as_f32(ao, 2, "a"), *W = A ? as_f32(wo, 2, "weight") : NULL;
    PyArrayObject *Bi = W ? opt_f32(bo, 1, "bias", &e1) : NULL, *R = NULL, *C = NULL;
    float *Wp = NULL;
    PyObject *ret = NULL;
    if (!W || e1) goto done;
    R = opt_f32(ro, 2, "residual", &e2);
    if (e2) goto done;
    int M = DIM(A, 0), K = DIM(A, 1), N = DIM(W, 0);
    if (DIM(W, 1) != K || N < 1 || K < 1) { PyErr_Format(PyExc_ValueError, "gemm: weight must be [N, %d]", K); goto done; }
    if (Bi && DIM(Bi, 0) != N) { PyErr_Format(PyExc_ValueError, "gemm: bias must have %d elements", N); goto done; }
    if (R && (DIM(R, 0) != M || DIM(R, 1) != N)) { PyErr_SetString(PyExc_ValueError, "gemm: residual must be [M, N]"); goto done; }
    npy_intp dims[2] = {M, N};
    if (!(C = new_f32(2, dims))) goto done;
    if (!(Wp = mv_aligned_alloc(mv_gemm_packed_floats(K, N) * sizeof(float)))) { PyErr_NoMemory(); goto done; }
    mv_gemm_args a = {.M = M, .N = N, .K = K, .A = F(A), .lda = K, .Wp = Wp, .bias = Bi ? F(Bi) : NULL,
                      .R = R ? F(R) : NULL, .ldr = N, .C = F(C), .ldc = N, .act = act};
    gemm_task t = {&a, mv_kernels(parse_isa(isa))->gemm};
    int n = parse_threads(nth);
    Py_BEGIN_ALLOW_THREADS
    mv_pack_gemm_weights(F(W), N, K, Wp);
    run_parallel(gemm_run, &t, n);
    Py_END_ALLOW_THREADS
    ret = (PyObject *)C; C = NULL;
done:
    mv_aligned_free(Wp);
    Py_XDECREF(A); Py_XDECREF(W); Py_XDECREF(Bi); Py_XDECREF(R); Py_XDECREF(C);
    return ret;
}

typedef struct { const mv_conv2d_args *a; mv_conv2d_fn f; size_t per; } conv_task;
static void conv_run(void *c, int tid, int nth) {
    conv_task *t = c;
    mv_conv2d_args a = *t->a;
    if (a.scratch) a.scratch += (size_t)tid * t->per;   /* Winograd: per-worker scratch */
    t->f(&a, tid, nth);
}

/* conv2d(x[B,H,W,C1], w[Co,Ci,kh,kw], bias, stride, pad, dil, act, x2|None,
 *        residual|None, isa, nth, algo=0) -> [B,OH,OW,Co]
 * algo: 0 as a graph would (Winograd where eligible, its tile by the map
 * size), 1 implicit GEMM, 2 Winograd F(2x2, 3x3), 3 Winograd F(4x4, 3x3)
 * (2 and 3: 3x3, stride 1, pad 1, dilation 1, no residual only). */
static PyObject *py_conv2d(PyObject *self, PyObject *args) {
    PyObject *xo, *wo, *bo, *x2o, *ro;
    int stride, pad, dil, act, isa, nth, algo = 0, e1 = 0, e2 = 0, e3 = 0;
    if (!PyArg_ParseTuple(args, "OOOiiiiOOii|i", &xo, &wo, &bo, &stride, &pad, &dil, &act, &x2o, &ro, &isa, &nth,
                          &algo))
        return NULL;
    if (check_isa(isa) < 0) return NULL;
    if (algo < 0 || algo > 3) { PyErr_SetString(PyExc_ValueError, "conv2d: algorithm must be 0 (auto), 1 (direct), 2 (winograd) or 3 (winograd4)"); return NULL; }
    PyArrayObject *X = as_f32(xo, 4, "x"), *W = X ? as_f32(wo, 4, "weight") : NULL;
    PyArrayObject *Bi = NULL, *X2 = NULL, *R = NULL, *Y = NULL;
    float *Wp = NULL, *zero = NULL, *tmp = NULL, *scratch = NULL;
    PyObject *ret = NULL;
    if (!W) goto done;
    Bi = opt_f32(bo, 1, "bias", &e1);
    if (!e1) X2 = opt_f32(x2o, 4, "x2", &e2);
    if (!e1 && !e2) R = opt_f32(ro, 4, "residual", &e3);
    if (e1 || e2 || e3) goto done;
    int B = DIM(X, 0), H = DIM(X, 1), Wd = DIM(X, 2), C1 = DIM(X, 3), C2 = X2 ? DIM(X2, 3) : 0;
    int Co = DIM(W, 0), kh = DIM(W, 2), kw = DIM(W, 3);
    if (stride < 1 || pad < 0 || dil < 1 || stride > MV_MAX_CONV_PARAM || pad > MV_MAX_CONV_PARAM || dil > MV_MAX_CONV_PARAM) {
        PyErr_Format(PyExc_ValueError, "conv2d: need 1 <= stride, 0 <= padding, 1 <= dilation, all <= %d", MV_MAX_CONV_PARAM); goto done;
    }
    if (DIM(W, 1) != C1 + C2 || Co < 1 || kh < 1 || kw < 1) {
        PyErr_Format(PyExc_ValueError, "conv2d: weight has %d input channels, input has %d", DIM(W, 1), C1 + C2); goto done;
    }
    if (X2 && (DIM(X2, 0) != B || DIM(X2, 1) != H || DIM(X2, 2) != Wd)) { PyErr_SetString(PyExc_ValueError, "conv2d: x2 must match x in B, H, W"); goto done; }
    if (Bi && DIM(Bi, 0) != Co) { PyErr_Format(PyExc_ValueError, "conv2d: bias must have %d elements", Co); goto done; }
    int OH = mv_conv_out_size(H, kh, stride, pad, dil), OW = mv_conv_out_size(Wd, kw, stride, pad, dil);
    if (OH < 1 || OW < 1) { PyErr_SetString(PyExc_ValueError, "conv2d: input smaller than the kernel"); goto done; }
    if (R && (DIM(R, 0) != B || DIM(R, 1) != OH || DIM(R, 2) != OW || DIM(R, 3) != Co)) { PyErr_SetString(PyExc_ValueError, "conv2d: residual must match the output"); goto done; }
    int wino_ok = mv_conv3x3_wino_shape_ok(kh, kw, stride, pad, dil, R != NULL);
    if (algo >= 2 && !wino_ok) {
        PyErr_SetString(PyExc_ValueError, "conv2d: Winograd needs a 3x3 kernel, stride 1, padding 1, dilation 1 and no residual");
        goto done;
    }
    int wino = algo >= 2 || (algo == 0 && wino_ok && mv_conv3x3_wino_pays(C1 + C2, Co));
    int wtile = algo == 3 ? 4 : algo == 2 ? 2 : mv_conv3x3_wino_tile(H, Wd);
    npy_intp dims[4] = {B, OH, OW, Co};
    if (!(Y = new_f32(4, dims))) goto done;
    int n = parse_threads(nth);
    size_t per = wino ? mv_conv3x3_wino_scratch_floats(wtile, H, Wd, C1 + C2, Co, 1) : 0;
    size_t wfloats = wino ? mv_conv3x3_wino_packed_floats(wtile, C1 + C2, Co) : mv_conv2d_packed_floats(kh, kw, C1 + C2, Co);
    Wp = mv_aligned_alloc(wfloats * sizeof(float));
    zero = mv_aligned_alloc((size_t)(C1 + C2 + 16) * sizeof(float));
    if (wino) {
        tmp = mv_aligned_alloc((size_t)Co * (C1 + C2) * sizeof(float));
        scratch = mv_aligned_alloc(per * (size_t)n * sizeof(float));
    }
    if (!Wp || !zero || (wino && (!tmp || !scratch))) { PyErr_NoMemory(); goto done; }
    memset(zero, 0, (size_t)(C1 + C2 + 16) * sizeof(float));
    mv_conv2d_args a = {.B = B, .H = H, .W = Wd, .C1 = C1, .X1 = F(X), .ldx1 = C1,
                        .C2 = C2, .X2 = X2 ? F(X2) : NULL, .ldx2 = C2, .OH = OH, .OW = OW, .Cout = Co,
                        .kh = kh, .kw = kw, .stride = stride, .pad = pad, .dil = dil, .Wp = Wp,
                        .bias = Bi ? F(Bi) : NULL, .R = R ? F(R) : NULL, .ldr = Co, .Y = F(Y), .ldy = Co,
                        .act = act, .zero = zero, .scratch = scratch, .wtile = wtile};
    const mv_kernel_table *kt = mv_kernels(parse_isa(isa));
    conv_task t = {&a, wino ? kt->conv3x3_wino : kt->conv2d, per};
    if (PyArray_SIZE(Y) > 0) {
        Py_BEGIN_ALLOW_THREADS
        if (wino) mv_pack_conv3x3_wino_weights(wtile, F(W), Co, C1 + C2, tmp, Wp);
        else mv_pack_conv2d_weights(F(W), Co, C1 + C2, kh, kw, Wp);
        run_parallel(conv_run, &t, n);
        Py_END_ALLOW_THREADS
    }
    ret = (PyObject *)Y; Y = NULL;
done:
    mv_aligned_free(Wp); mv_aligned_free(zero); mv_aligned_free(tmp); mv_aligned_free(scratch);
    Py_XDECREF(X); Py_XDECREF(W); Py_XDECREF(Bi); Py_XDECREF(X2); Py_XDECREF(R); Py_XDECREF(Y);
    return ret;
}

typedef struct { const mv_dwconv2d_args *a; mv_dwconv2d_fn f; } dw_task;
static void dw_run(void *c, int tid, int nth) { dw_task *t = c; t->f(t->a, tid, nth); }

/* dwconv2d(x[B,H,W,C], w[C,1,3,3], bias, stride, pad, dil, act, isa, nth) */
static PyObject *py_dwconv2d(PyObject *self, PyObject *args) {
    PyObject *xo, *wo, *bo;
    int stride, pad, dil, act, isa, nth, e1 = 0;
    if (!PyArg_ParseTuple(args, "OOOiiiiii", &xo, &wo, &bo, &stride, &pad, &dil, &act, &isa, &nth)) return NULL;
    if (check_isa(isa) < 0) return NULL;
    PyArrayObject *X = as_f32(xo, 4, "x"), *W = X ? as_f32(wo, 4, "weight") : NULL, *Bi = NULL, *Y = NULL;
    float *Wt = NULL;
    PyObject *ret = NULL;
    if (!W) goto done;
    Bi = opt_f32(bo, 1, "bias", &e1);
    if (e1) goto done;
    int B = DIM(X, 0), H = DIM(X, 1), Wd = DIM(X, 2), C = DIM(X, 3);
    if (DIM(W, 0) != C || DIM(W, 1) != 1 || DIM(W, 2) != 3 || DIM(W, 3) != 3) {
        PyErr_Format(PyExc_ValueError, "dwconv2d: weight must be [%d, 1, 3, 3]", C); goto done;
    }
    if (Bi && DIM(Bi, 0) != C) { PyErr_Format(PyExc_ValueError, "dwconv2d: bias must have %d elements", C); goto done; }
    if (stride < 1 || pad < 0 || dil < 1 || stride > MV_MAX_CONV_PARAM || pad > MV_MAX_CONV_PARAM || dil > MV_MAX_CONV_PARAM) {
        PyErr_Format(PyExc_ValueError, "dwconv2d: need 1 <= stride, 0 <= padding, 1 <= dilation, all <= %d", MV_MAX_CONV_PARAM); goto done;
    }
    int OH = mv_conv_out_size(H, 3, stride, pad, dil), OW = mv_conv_out_size(Wd, 3, stride, pad, dil);
    if (OH < 1 || OW < 1) { PyErr_SetString(PyExc_ValueError, "dwconv2d: input smaller than the kernel"); goto done; }
    npy_intp dims[4] = {B, OH, OW, C};
    if (!(Y = new_f32(4, dims))) goto done;
    if (!(Wt = mv_aligned_alloc((size_t)9 * C * sizeof(float)))) { PyErr_NoMemory(); goto done; }
    mv_dwconv2d_args a = {.B = B, .H = H, .W = Wd, .C = C, .X = F(X), .OH = OH, .OW = OW, .stride = stride,
                          .pad = pad, .dil = dil, .Wt = Wt, .bias = Bi ? F(Bi) : NULL, .Y = F(Y), .act = act};
    dw_task t = {&a, mv_kernels(parse_isa(isa))->dwconv2d};
    int n = parse_threads(nth);
    if (PyArray_SIZE(Y) > 0) {
        Py_BEGIN_ALLOW_THREADS
        mv_pack_dwconv2d_weights(F(W), C, Wt);
        run_parallel(dw_run, &t, n);
        Py_END_ALLOW_THREADS
    }
    ret = (PyObject *)Y; Y = NULL;
done:
    mv_aligned_free(Wt);
    Py_XDECREF(X); Py_XDECREF(W); Py_XDECREF(Bi); Py_XDECREF(Y);
    return ret;
}

typedef struct { const mv_attention_args *a; mv_attention_fn f; size_t per; } att_task;
static void att_run(void *c, int tid, int nth) {
    att_task *t = c;
    mv_attention_args a = *t->a;
    a.scratch += (size_t)tid * t->per;        /* each worker its own scratch */
    t->f(&a, tid, nth);
}

/* attention(qkv[B,H,W,3D], heads, ph, pw, scale, isa, nth) -> [B,H,W,D] */
static PyObject *py_attention(PyObject *self, PyObject *args) {
    PyObject *qo;
    int heads, ph, pw, isa, nth;
    float scale;
    if (!PyArg_ParseTuple(args, "Oiiifii", &qo, &heads, &ph, &pw, &scale, &isa, &nth)) return NULL;
    if (check_isa(isa) < 0) return NULL;
    PyArrayObject *Q = as_f32(qo, 4, "qkv"), *O = NULL;
    float *scratch = NULL;
    PyObject *ret = NULL;
    if (!Q) goto done;
    int B = DIM(Q, 0), H = DIM(Q, 1), W = DIM(Q, 2), C3 = DIM(Q, 3);
    if (heads < 1 || C3 % 3 || (C3 / 3) % heads || C3 == 0) {
        PyErr_Format(PyExc_ValueError, "attention: %d channels is not 3 x heads(%d) x head_dim", C3, heads); goto done;
    }
    if (ph < 1 || pw < 1 || H % ph || W % pw) { PyErr_SetString(PyExc_ValueError, "attention: H and W must be multiples of the patch size"); goto done; }
    npy_intp dims[4] = {B, H, W, C3 / 3};
    if (!(O = new_f32(4, dims))) goto done;
    int n = parse_threads(nth), N = (H / ph) * (W / pw);
    size_t per = mv_attention_scratch_floats(N, C3 / 3 / heads);
    if (!(scratch = mv_aligned_alloc(per * (size_t)n * sizeof(float)))) { PyErr_NoMemory(); goto done; }
    mv_attention_args a = {.B = B, .H = H, .W = W, .ph = ph, .pw = pw, .D = C3 / 3, .heads = heads,
                           .scale = scale, .QKV = F(Q), .ldqkv = C3, .O = F(O), .ldo = C3 / 3, .scratch = scratch};
    att_task t = {&a, mv_kernels(parse_isa(isa))->attention, per};
    Py_BEGIN_ALLOW_THREADS
    run_parallel(att_run, &t, n);
    Py_END_ALLOW_THREADS
    ret = (PyObject *)O; O = NULL;
done:
    mv_aligned_free(scratch);
    Py_XDECREF(Q); Py_XDECREF(O);
    return ret;
}

/* sep_attention(qkv[B,H,W,1+2D], ph, pw, isa, nth) -> [B,H,W,D] */
typedef struct { const mv_sep_attention_args *a; size_t per; mv_sep_attention_fn fn; } sep_task;
static void sep_run(void *c, int tid, int nth) {
    sep_task *t = c;
    mv_sep_attention_args a = *t->a;
    a.scratch += (size_t)tid * t->per;
    t->fn(&a, tid, nth);
}
static PyObject *py_sep_attention(PyObject *self, PyObject *args) {
    PyObject *qo;
    int ph, pw, isa, nth;
    if (!PyArg_ParseTuple(args, "Oiiii", &qo, &ph, &pw, &isa, &nth)) return NULL;
    if (check_isa(isa) < 0) return NULL;
    PyArrayObject *Q = as_f32(qo, 4, "qkv"), *O = NULL;
    float *scratch = NULL;
    PyObject *ret = NULL;
    if (!Q) return NULL;
    int B = DIM(Q, 0), H = DIM(Q, 1), W = DIM(Q, 2), C = DIM(Q, 3);
    if (C < 3 || (C - 1) % 2) { PyErr_Format(PyExc_ValueError, "sep_attention: %d channels is not 1 + 2 x dim", C); goto done; }
    if (ph < 1 || pw < 1 || H % ph || W % pw) { PyErr_SetString(PyExc_ValueError, "sep_attention: H and W must be multiples of the patch size"); goto done; }
    npy_intp dims[4] = {B, H, W, (C - 1) / 2};
    if (!(O = new_f32(4, dims))) goto done;
    int n = parse_threads(nth), D = (C - 1) / 2;
    size_t per = mv_sep_attention_scratch_floats((H / ph) * (W / pw), D);
    if (!(scratch = mv_aligned_alloc(per * (size_t)n * sizeof(float)))) { PyErr_NoMemory(); goto done; }
    mv_sep_attention_args a = {.B = B, .H = H, .W = W, .ph = ph, .pw = pw, .D = D, .QKV = F(Q), .ldqkv = C,
                               .O = F(O), .ldo = D, .scratch = scratch};
    sep_task t = {&a, per, mv_kernels(parse_isa(isa))->sep_attention};
    Py_BEGIN_ALLOW_THREADS
    run_parallel(sep_run, &t, n);
    Py_END_ALLOW_THREADS
    ret = (PyObject *)O; O = NULL;
done:
    mv_aligned_free(scratch);
    Py_XDECREF(Q); Py_XDECREF(O);
    return ret;
}

/* Generic wrappers for the reference-only kernels. */
typedef struct {
    int kind;
    const float *x, *x2, *p0, *p1, *p2, *p3;
    float *y;
    ptrdiff_t M;
    int B, H, W, C, C2, OH, OW, i0, i1;
    float f0;
    mv_act_fn actf;
    mv_layernorm_fn lnf;
    mv_groupnorm1_fn gnf;
} misc_task;

enum { K_LN, K_GN, K_BN, K_ACT, K_ADD, K_CAT, K_UNF, K_FOLD, K_RESIZE, K_GLOBAL_AVG_POOL, K_N2H, K_H2N, K_CROP };

static void misc_run(void *c, int tid, int nth) {
    misc_task *t = c;
    switch (t->kind) {
    case K_LN: t->lnf(t->x, t->M, t->C, t->C, t->p0, t->p1, t->f0, t->y, t->C, tid, nth); break;
    case K_GN: t->gnf(t->x, t->B, (ptrdiff_t)t->H * t->W, t->C, t->p0, t->p1, t->f0, t->y, tid, nth); break;
    case K_BN: mv_batchnorm_nhwc_f32__ref(t->x, t->M, t->C, t->p0, t->p1, t->p2, t->p3, t->f0, t->y, tid, nth); break;
    case K_ACT: t->actf(t->x, t->M, t->i0, t->y, tid, nth); break;
    case K_ADD: mv_add_f32__ref(t->x, t->x2, t->M, t->y, tid, nth); break;
    case K_CAT: mv_concat_nhwc_f32__ref(t->x, t->C, t->x2, t->C2, t->M, t->y, tid, nth); break;
    case K_UNF: mv_unfold_nhwc_f32__ref(t->x, t->B, t->H, t->W, t->C, t->i0, t->i1, t->y, tid, nth); break;
    case K_FOLD: mv_fold_nhwc_f32__ref(t->x, t->B, t->H, t->W, t->C, t->i0, t->i1, t->y, tid, nth); break;
    case K_RESIZE: mv_resize_bilinear_nhwc_f32__ref(t->x, t->B, t->H, t->W, t->C, t->y, t->OH, t->OW, t->i0, tid, nth); break;
    case K_CROP: mv_crop_pad_nhwc_f32__ref(t->x, t->B, t->H, t->W, t->C, t->y, t->OH, t->OW, tid, nth); break;
    case K_GLOBAL_AVG_POOL: mv_global_avg_pool_nhwc_f32__ref(t->x, t->B, (ptrdiff_t)t->H * t->W, t->C, t->C, t->y, tid, nth); break;
    case K_N2H: mv_nchw_to_nhwc_f32__ref(t->x, t->B, t->C, t->H, t->W, t->y, tid, nth); break;
    case K_H2N: mv_nhwc_to_nchw_f32__ref(t->x, t->B, t->C, t->H, t->W, t->C, t->y, tid, nth); break;
    }
}

static PyObject *finish_misc(misc_task *t, PyArrayObject *Y, int nth) {
    if (PyArray_SIZE(Y) == 0) {        /* nothing to compute: no kernel launch */
        return (PyObject *)Y;
    }
    Py_BEGIN_ALLOW_THREADS
    run_parallel(misc_run, t, parse_threads(nth));
    Py_END_ALLOW_THREADS
    return (PyObject *)Y;
}

/* layernorm(x[M,D], gamma[D], beta[D], eps, isa, nth) */
static PyObject *py_layernorm(PyObject *self, PyObject *args) {
    PyObject *xo, *go, *bo;
    float eps;
    int isa, nth;
    if (!PyArg_ParseTuple(args, "OOOfii", &xo, &go, &bo, &eps, &isa, &nth)) return NULL;
    if (check_isa(isa) < 0) return NULL;
    PyArrayObject *X = as_f32(xo, 2, "x"), *G = X ? as_f32(go, 1, "weight") : NULL;
    PyArrayObject *Bt = G ? as_f32(bo, 1, "bias") : NULL, *Y = NULL;
    PyObject *ret = NULL;
    if (!Bt) goto done;
    int D = DIM(X, 1);
    if (DIM(G, 0) != D || DIM(Bt, 0) != D) { PyErr_Format(PyExc_ValueError, "layernorm: weight and bias must have %d elements", D); goto done; }
    npy_intp dims[2] = {DIM(X, 0), D};
    if (!(Y = new_f32(2, dims))) goto done;
    misc_task t = {.kind = K_LN, .x = F(X), .p0 = F(G), .p1 = F(Bt), .y = F(Y), .M = DIM(X, 0), .C = D, .f0 = eps,
                   .lnf = mv_kernels(parse_isa(isa))->layernorm};
    ret = finish_misc(&t, Y, nth); Y = NULL;
done:
    Py_XDECREF(X); Py_XDECREF(G); Py_XDECREF(Bt); Py_XDECREF(Y);
    return ret;
}

/* groupnorm1(x[B,H,W,C], gamma, beta, eps, isa, nth) */
static PyObject *py_groupnorm1(PyObject *self, PyObject *args) {
    PyObject *xo, *go, *bo;
    float eps;
    int isa, nth;
    if (!PyArg_ParseTuple(args, "OOOfii", &xo, &go, &bo, &eps, &isa, &nth)) return NULL;
    if (check_isa(isa) < 0) return NULL;
    PyArrayObject *X = as_f32(xo, 4, "x"), *G = X ? as_f32(go, 1, "weight") : NULL;
    PyArrayObject *Bt = G ? as_f32(bo, 1, "bias") : NULL, *Y = NULL;
    PyObject *ret = NULL;
    if (!Bt) goto done;
    int C = DIM(X, 3);
    if (DIM(G, 0) != C || DIM(Bt, 0) != C) { PyErr_Format(PyExc_ValueError, "groupnorm: weight and bias must have %d elements", C); goto done; }
    if (!(Y = new_f32(4, PyArray_DIMS(X)))) goto done;
    misc_task t = {.kind = K_GN, .x = F(X), .p0 = F(G), .p1 = F(Bt), .y = F(Y), .B = DIM(X, 0), .H = DIM(X, 1), .W = DIM(X, 2), .C = C, .f0 = eps,
                   .gnf = mv_kernels(parse_isa(isa))->groupnorm1};
    ret = finish_misc(&t, Y, nth); Y = NULL;
done:
    Py_XDECREF(X); Py_XDECREF(G); Py_XDECREF(Bt); Py_XDECREF(Y);
    return ret;
}

/* batchnorm(x[M,C], mean, var, gamma, beta, eps, nth) */
static PyObject *py_batchnorm(PyObject *self, PyObject *args) {
    PyObject *xo, *o[4];
    float eps;
    int nth;
    if (!PyArg_ParseTuple(args, "OOOOOfi", &xo, &o[0], &o[1], &o[2], &o[3], &eps, &nth)) return NULL;
    PyArrayObject *X = as_f32(xo, 2, "x"), *P[4] = {NULL, NULL, NULL, NULL}, *Y = NULL;
    PyObject *ret = NULL;
    static const char *names[4] = {"running_mean", "running_var", "weight", "bias"};
    if (!X) goto done;
    for (int k = 0; k < 4; k++) {
        if (!(P[k] = as_f32(o[k], 1, names[k]))) goto done;
        if (DIM(P[k], 0) != DIM(X, 1)) { PyErr_Format(PyExc_ValueError, "batchnorm: %s must have %d elements", names[k], DIM(X, 1)); goto done; }
    }
    if (!(Y = new_f32(2, PyArray_DIMS(X)))) goto done;
    misc_task t = {.kind = K_BN, .x = F(X), .p0 = F(P[0]), .p1 = F(P[1]), .p2 = F(P[2]), .p3 = F(P[3]), .y = F(Y), .M = DIM(X, 0), .C = DIM(X, 1), .f0 = eps};
    ret = finish_misc(&t, Y, nth); Y = NULL;
done:
    Py_XDECREF(X); for (int k = 0; k < 4; k++) Py_XDECREF(P[k]); Py_XDECREF(Y);
    return ret;
}

/* act(x, act, isa, nth) — any shape */
static PyObject *py_act(PyObject *self, PyObject *args) {
    PyObject *xo;
    int act, isa, nth;
    if (!PyArg_ParseTuple(args, "Oiii", &xo, &act, &isa, &nth)) return NULL;
    if (check_isa(isa) < 0) return NULL;
    if (act < 0 || act > MV_ACT_RELU) { PyErr_SetString(PyExc_ValueError, "act: unknown activation"); return NULL; }
    PyArrayObject *X = as_f32(xo, -1, "x"), *Y;
    if (!X) return NULL;
    if (!(Y = new_f32(PyArray_NDIM(X), PyArray_DIMS(X)))) { Py_DECREF(X); return NULL; }
    misc_task t = {.kind = K_ACT, .x = F(X), .y = F(Y), .M = PyArray_SIZE(X), .i0 = act, .actf = mv_kernels(parse_isa(isa))->act};
    PyObject *ret = finish_misc(&t, Y, nth);
    Py_DECREF(X);
    return ret;
}

/* add(a, b, nth) — same shapes */
static PyObject *py_add(PyObject *self, PyObject *args) {
    PyObject *ao, *bo;
    int nth;
    if (!PyArg_ParseTuple(args, "OOi", &ao, &bo, &nth)) return NULL;
    PyArrayObject *A = as_f32(ao, -1, "a"), *Bv = A ? as_f32(bo, -1, "b") : NULL, *Y = NULL;
    PyObject *ret = NULL;
    if (!Bv) goto done;
    if (!PyArray_SAMESHAPE(A, Bv)) { PyErr_SetString(PyExc_ValueError, "add: shapes differ"); goto done; }
    if (!(Y = new_f32(PyArray_NDIM(A), PyArray_DIMS(A)))) goto done;
    misc_task t = {.kind = K_ADD, .x = F(A), .x2 = F(Bv), .y = F(Y), .M = PyArray_SIZE(A)};
    ret = finish_misc(&t, Y, nth); Y = NULL;
done:
    Py_XDECREF(A); Py_XDECREF(Bv); Py_XDECREF(Y);
    return ret;
}

/* concat(a[M,C1], b[M,C2], nth) -> [M, C1+C2] */
static PyObject *py_concat(PyObject *self, PyObject *args) {
    PyObject *ao, *bo;
    int nth;
    if (!PyArg_ParseTuple(args, "OOi", &ao, &bo, &nth)) return NULL;
    PyArrayObject *A = as_f32(ao, 2, "a"), *Bv = A ? as_f32(bo, 2, "b") : NULL, *Y = NULL;
    PyObject *ret = NULL;
    if (!Bv) goto done;
    if (DIM(A, 0) != DIM(Bv, 0)) { PyErr_SetString(PyExc_ValueError, "concat: row counts differ"); goto done; }
    npy_intp dims[2] = {DIM(A, 0), DIM(A, 1) + DIM(Bv, 1)};
    if (!(Y = new_f32(2, dims))) goto done;
    misc_task t = {.kind = K_CAT, .x = F(A), .x2 = F(Bv), .y = F(Y), .M = DIM(A, 0), .C = DIM(A, 1), .C2 = DIM(Bv, 1)};
    ret = finish_misc(&t, Y, nth); Y = NULL;
done:
    Py_XDECREF(A); Py_XDECREF(Bv); Py_XDECREF(Y);
    return ret;
}

/* unfold(x[B,H,W,C], ph, pw, nth) -> [B*ph*pw, N, C] */
static PyObject *py_unfold(PyObject *self, PyObject *args) {
    PyObject *xo;
    int ph, pw, nth;
    if (!PyArg_ParseTuple(args, "Oiii", &xo, &ph, &pw, &nth)) return NULL;
    PyArrayObject *X = as_f32(xo, 4, "x"), *Y = NULL;
    PyObject *ret = NULL;
    if (!X) return NULL;
    int B = DIM(X, 0), H = DIM(X, 1), W = DIM(X, 2), C = DIM(X, 3);
    if (ph < 1 || pw < 1 || H % ph || W % pw) { PyErr_SetString(PyExc_ValueError, "unfold: H and W must be multiples of the patch size"); goto done; }
    npy_intp dims[3] = {(npy_intp)B * ph * pw, (npy_intp)(H / ph) * (W / pw), C};
    if (!(Y = new_f32(3, dims))) goto done;
    misc_task t = {.kind = K_UNF, .x = F(X), .y = F(Y), .B = B, .H = H, .W = W, .C = C, .i0 = ph, .i1 = pw};
    ret = finish_misc(&t, Y, nth); Y = NULL;
done:
    Py_XDECREF(X); Py_XDECREF(Y);
    return ret;
}

/* fold(t[B*P,N,C], B, H, W, ph, pw, nth) -> [B,H,W,C] */
static PyObject *py_fold(PyObject *self, PyObject *args) {
    PyObject *xo;
    int B, H, W, ph, pw, nth;
    if (!PyArg_ParseTuple(args, "Oiiiiii", &xo, &B, &H, &W, &ph, &pw, &nth)) return NULL;
    PyArrayObject *X = as_f32(xo, 3, "tokens"), *Y = NULL;
    PyObject *ret = NULL;
    if (!X) return NULL;
    if (B < 0 || H < 1 || W < 1 || ph < 1 || pw < 1 || H % ph || W % pw ||
        (int64_t)PyArray_DIM(X, 0) != (int64_t)B * ph * pw ||
        (int64_t)PyArray_DIM(X, 1) != (int64_t)(H / ph) * (W / pw)) {
        PyErr_SetString(PyExc_ValueError, "fold: tokens must be [B*ph*pw, (H/ph)*(W/pw), C]"); goto done;
    }
    npy_intp dims[4] = {B, H, W, DIM(X, 2)};
    if (!(Y = new_f32(4, dims))) goto done;
    misc_task t = {.kind = K_FOLD, .x = F(X), .y = F(Y), .B = B, .H = H, .W = W, .C = DIM(X, 2), .i0 = ph, .i1 = pw};
    ret = finish_misc(&t, Y, nth); Y = NULL;
done:
    Py_XDECREF(X); Py_XDECREF(Y);
    return ret;
}

/* resize_bilinear(x[B,H,W,C], OH, OW, align_corners, nth) */
static PyObject *py_resize(PyObject *self, PyObject *args) {
    PyObject *xo;
    int OH, OW, ac, nth;
    if (!PyArg_ParseTuple(args, "Oiipi", &xo, &OH, &OW, &ac, &nth)) return NULL;
    PyArrayObject *X = as_f32(xo, 4, "x"), *Y = NULL;
    PyObject *ret = NULL;
    if (!X) return NULL;
    if (OH < 1 || OW < 1 || DIM(X, 1) < 1 || DIM(X, 2) < 1) { PyErr_SetString(PyExc_ValueError, "resize: sizes must be >= 1"); goto done; }
    npy_intp dims[4] = {DIM(X, 0), OH, OW, DIM(X, 3)};
    if (!(Y = new_f32(4, dims))) goto done;
    misc_task t = {.kind = K_RESIZE, .x = F(X), .y = F(Y), .B = DIM(X, 0), .H = DIM(X, 1), .W = DIM(X, 2), .C = DIM(X, 3), .OH = OH, .OW = OW, .i0 = ac};
    ret = finish_misc(&t, Y, nth); Y = NULL;
done:
    Py_XDECREF(X); Py_XDECREF(Y);
    return ret;
}

typedef struct { const float *x; int64_t *lab; int B, H, W, C, OH, OW, ac; } argmax_task;
static void argmax_run(void *c, int tid, int nth) {
    argmax_task *t = c;
    mv_resize_bilinear_argmax_nhwc_f32__ref(t->x, t->B, t->H, t->W, t->C, t->lab, t->OH, t->OW, t->ac, tid, nth);
}

/* resize_argmax(x[B,H,W,C], OH, OW, align_corners, nth) -> int64 [B,OH,OW] */
static PyObject *py_resize_argmax(PyObject *self, PyObject *args) {
    PyObject *xo;
    int OH, OW, ac, nth;
    if (!PyArg_ParseTuple(args, "Oiipi", &xo, &OH, &OW, &ac, &nth)) return NULL;
    if (check_threads_arg(nth) < 0) return NULL;
    PyArrayObject *X = as_f32(xo, 4, "x");
    if (!X) return NULL;
    if (OH < 1 || OW < 1 || DIM(X, 1) < 1 || DIM(X, 2) < 1 || DIM(X, 3) < 1) {
        PyErr_SetString(PyExc_ValueError, "resize_argmax: sizes and channels must be >= 1");
        Py_DECREF(X); return NULL;
    }
    npy_intp dims[3] = {DIM(X, 0), OH, OW};
    PyArrayObject *L = (PyArrayObject *)PyArray_SimpleNew(3, dims, NPY_INT64);
    if (!L) { Py_DECREF(X); return NULL; }
    argmax_task t = {.x = F(X), .lab = (int64_t *)PyArray_DATA(L), .B = DIM(X, 0), .H = DIM(X, 1),
                     .W = DIM(X, 2), .C = DIM(X, 3), .OH = OH, .OW = OW, .ac = ac};
    if (PyArray_SIZE(L) > 0) {
        Py_BEGIN_ALLOW_THREADS
        run_parallel(argmax_run, &t, parse_threads(nth));
        Py_END_ALLOW_THREADS
    }
    Py_DECREF(X);
    return (PyObject *)L;
}

/* crop_pad(x[B,H,W,C], OH, OW, nth) -> [B,OH,OW,C], top-left anchored */
static PyObject *py_crop_pad(PyObject *self, PyObject *args) {
    PyObject *xo;
    int OH, OW, nth;
    if (!PyArg_ParseTuple(args, "Oiii", &xo, &OH, &OW, &nth)) return NULL;
    PyArrayObject *X = as_f32(xo, 4, "x"), *Y = NULL;
    PyObject *ret = NULL;
    if (!X) return NULL;
    if (OH < 1 || OW < 1) { PyErr_SetString(PyExc_ValueError, "crop_pad: sizes must be >= 1"); goto done; }
    npy_intp dims[4] = {DIM(X, 0), OH, OW, DIM(X, 3)};
    if (!(Y = new_f32(4, dims))) goto done;
    misc_task t = {.kind = K_CROP, .x = F(X), .y = F(Y), .B = DIM(X, 0), .H = DIM(X, 1), .W = DIM(X, 2), .C = DIM(X, 3), .OH = OH, .OW = OW};
    ret = finish_misc(&t, Y, nth); Y = NULL;
done:
    Py_XDECREF(X); Py_XDECREF(Y);
    return ret;
}

/* global_avg_pool(x[B,H,W,C], nth) -> [B,C] */
static PyObject *py_global_avg_pool(PyObject *self, PyObject *args) {
    PyObject *xo;
    int nth;
    if (!PyArg_ParseTuple(args, "Oi", &xo, &nth)) return NULL;
    PyArrayObject *X = as_f32(xo, 4, "x"), *Y = NULL;
    PyObject *ret = NULL;
    if (!X) return NULL;
    if (DIM(X, 1) < 1 || DIM(X, 2) < 1) { PyErr_SetString(PyExc_ValueError, "global_avg_pool: empty feature map"); goto done; }
    npy_intp dims[2] = {DIM(X, 0), DIM(X, 3)};
    if (!(Y = new_f32(2, dims))) goto done;
    misc_task t = {.kind = K_GLOBAL_AVG_POOL, .x = F(X), .y = F(Y), .B = DIM(X, 0), .H = DIM(X, 1), .W = DIM(X, 2), .C = DIM(X, 3)};
    ret = finish_misc(&t, Y, nth); Y = NULL;
done:
    Py_XDECREF(X); Py_XDECREF(Y);
    return ret;
}

/* nchw_to_nhwc(x[B,C,H,W], nth) and nhwc_to_nchw(x[B,H,W,C], nth) */
static PyObject *layout_common(PyObject *args, int to_nhwc) {
    PyObject *xo;
    int nth;
    if (!PyArg_ParseTuple(args, "Oi", &xo, &nth)) return NULL;
    PyArrayObject *X = as_f32(xo, 4, "x"), *Y = NULL;
    if (!X) return NULL;
    npy_intp d0 = DIM(X, 0), d1 = DIM(X, 1), d2 = DIM(X, 2), d3 = DIM(X, 3);
    npy_intp dims[4] = {d0, to_nhwc ? d2 : d3, to_nhwc ? d3 : d1, to_nhwc ? d1 : d2};
    if (!(Y = new_f32(4, dims))) { Py_DECREF(X); return NULL; }
    misc_task t = {.kind = to_nhwc ? K_N2H : K_H2N, .x = F(X), .y = F(Y), .B = (int)d0,
                   .C = (int)(to_nhwc ? d1 : d3), .H = (int)(to_nhwc ? d2 : d1), .W = (int)(to_nhwc ? d3 : d2)};
    PyObject *ret = finish_misc(&t, Y, nth);
    Py_DECREF(X);
    return ret;
}
static PyObject *py_nchw_to_nhwc(PyObject *self, PyObject *args) { return layout_common(args, 1); }
static PyObject *py_nhwc_to_nchw(PyObject *self, PyObject *args) { return layout_common(args, 0); }

PyMethodDef mv_op_methods[] = {
    {"gemm", py_gemm, METH_VARARGS, NULL},
    {"conv2d", py_conv2d, METH_VARARGS, NULL},
    {"dwconv2d", py_dwconv2d, METH_VARARGS, NULL},
    {"attention", py_attention, METH_VARARGS, NULL},
    {"layernorm", py_layernorm, METH_VARARGS, NULL},
    {"sep_attention", py_sep_attention, METH_VARARGS, NULL},
    {"crop_pad", py_crop_pad, METH_VARARGS, NULL},
    {"groupnorm1", py_groupnorm1, METH_VARARGS, NULL},
    {"batchnorm", py_batchnorm, METH_VARARGS, NULL},
    {"act", py_act, METH_VARARGS, NULL},
    {"add", py_add, METH_VARARGS, NULL},
    {"concat", py_concat, METH_VARARGS, NULL},
    {"unfold", py_unfold, METH_VARARGS, NULL},
    {"fold", py_fold, METH_VARARGS, NULL},
    {"resize_bilinear", py_resize, METH_VARARGS, NULL},
    {"resize_argmax", py_resize_argmax, METH_VARARGS, NULL},
    {"global_avg_pool", py_global_avg_pool, METH_VARARGS, NULL},
    {"nchw_to_nhwc", py_nchw_to_nhwc, METH_VARARGS, NULL},
    {"nhwc_to_nchw", py_nhwc_to_nchw, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};
