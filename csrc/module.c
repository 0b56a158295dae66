/* module.c - the CPython binding (mobilevit._C); the only file that includes
 * Python.h.  Each function parses and validates its arguments with the GIL
 * held, releases the GIL around pure C work, and maps mv_status to a Python
 * exception.  Kernels are run through run_parallel(): one OpenMP region,
 * worker tid of nth computes its static share. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#include <numpy/arrayobject.h>
#include <pthread.h>
#include <stdatomic.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "ops/ops.h"
#include "model/graph.h"
#include "model/session.h"

#define MV_MAX_CONV_PARAM 65536   /* stride / padding / dilation cap (keeps sizes in range) */
/* Most worker threads a call may ask for (set_num_threads, num_threads=,
 * OMP_NUM_THREADS).  Above it libgomp may fail to create the team and then
 * calls exit() (gomp_fatal), taking the interpreter down; per-worker scratch
 * also grows with the count.  Requests above it are refused, never passed on. */
#define MV_MAX_THREADS 1024

static atomic_int g_isa = MV_ISA_REF;
static atomic_int g_threads = 1;
/* libgomp's thread pool does not survive fork(): a child forked after the
 * parent ran a parallel region would hang in its first one.  Children run
 * single-threaded instead (see run_parallel / mv_plan_run). */
static atomic_int g_omp_used = 0;
static atomic_int g_forked_child = 0;

static void mv_atfork_child(void) {
    if (atomic_load(&g_omp_used)) atomic_store(&g_forked_child, 1);
}

static int max_threads_default(void) {
#ifdef _OPENMP
    return omp_get_max_threads();
#else
    return 1;
#endif
}

typedef void (*task_fn)(void *ctx, int tid, int nth);

static void run_parallel(task_fn f, void *ctx, int nth) {
#ifdef _OPENMP
    if (nth > 1) {
        atomic_store(&g_omp_used, 1);
#pragma omp parallel num_threads(nth)
        f(ctx, omp_get_thread_num(), omp_get_num_threads());
        return;
    }
#endif
    f(ctx, 0, 1);
}

static int set_status_error(mv_status st, const char *msg) {
    switch (st) {
    case MV_OK: return 0;
    case MV_ERR_ARG: PyErr_SetString(PyExc_ValueError, msg && *msg ? msg : "invalid argument"); break;
    case MV_ERR_NOMEM:
        if (msg && *msg) PyErr_SetString(PyExc_MemoryError, msg); else PyErr_NoMemory();
        break;
    case MV_ERR_UNSUPPORTED: PyErr_SetString(PyExc_NotImplementedError, msg && *msg ? msg : "unsupported"); break;
    default: PyErr_SetString(PyExc_RuntimeError, msg && *msg ? msg : "internal error"); break;
    }
    return -1;
}

/* float32, C-contiguous, aligned, native-order view or copy of obj with the
 * given ndim (-1: any).  New reference or NULL with TypeError/ValueError. */
static PyArrayObject *as_f32(PyObject *obj, int ndim, const char *name) {
    if (obj == NULL || obj == Py_None) {
        PyErr_Format(PyExc_TypeError, "%s: expected a float32 array, got None", name);
        return NULL;
    }
    PyArrayObject *a = (PyArrayObject *)PyArray_FROMANY(obj, NPY_FLOAT32, 0, 0,
                                                        NPY_ARRAY_IN_ARRAY);
    if (!a) return NULL;
    if (ndim >= 0 && PyArray_NDIM(a) != ndim) {
        PyErr_Format(PyExc_ValueError, "%s: expected %d dimensions, got %d", name, ndim, PyArray_NDIM(a));
        Py_DECREF(a);
        return NULL;
    }
    return a;
}

static PyArrayObject *opt_f32(PyObject *obj, int ndim, const char *name, int *err) {
    *err = 0;
    if (obj == NULL || obj == Py_None) return NULL;
    PyArrayObject *a = as_f32(obj, ndim, name);
    if (!a) *err = 1;
    return a;
}

static PyArrayObject *new_f32(int ndim, const npy_intp *dims) {
    return (PyArrayObject *)PyArray_SimpleNew(ndim, (npy_intp *)dims, NPY_FLOAT32);
}

#define F(a) ((float *)PyArray_DATA(a))
#define DIM(a, i) ((int)PyArray_DIM(a, i))

static mv_isa parse_isa(int isa) {
    if (isa < 0) return (mv_isa)atomic_load(&g_isa);
    return (mv_isa)isa;
}

static int check_isa(int isa) {
    if (isa >= MV_ISA_COUNT || (isa >= 0 && !mv_isa_supported((mv_isa)isa))) {
        PyErr_Format(PyExc_ValueError, "ISA %d is not available on this CPU", isa);
        return -1;
    }
    return 0;
}

/* Worker count for a call: nth > 0 as asked (the Python layer has checked
 * the range; clamped here again so nothing larger ever reaches OpenMP),
 * else the module setting; 1 in a forked child. */
static int parse_threads(int nth) {
    if (atomic_load(&g_forked_child)) return 1;
    int n = nth > 0 ? nth : atomic_load(&g_threads);
    return n > MV_MAX_THREADS ? MV_MAX_THREADS : n;
}

/* num_threads argument of a call: 0 = the module setting, else 1..MV_MAX_THREADS. */
static int check_threads_arg(int nth) {
    if (nth < 0 || nth > MV_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "num_threads must be between 1 and %d, got %d", MV_MAX_THREADS, nth);
        return -1;
    }
    return 0;
}

/* ---- module-level settings ------------------------------------------------ */

static PyObject *py_set_isa(PyObject *self, PyObject *args) {
    int isa;
    if (!PyArg_ParseTuple(args, "i", &isa)) return NULL;
    if (isa < 0 || isa >= MV_ISA_COUNT || !mv_isa_supported((mv_isa)isa)) {
        PyErr_Format(PyExc_ValueError, "ISA '%s' is not supported by this CPU", mv_isa_name((mv_isa)isa));
        return NULL;
    }
    atomic_store(&g_isa, isa);
    Py_RETURN_NONE;
}

static PyObject *py_get_isa(PyObject *self, PyObject *noargs) {
    return PyUnicode_FromString(mv_isa_name((mv_isa)atomic_load(&g_isa)));
}

static PyObject *py_available_isas(PyObject *self, PyObject *noargs) {
    PyObject *l = PyList_New(0);
    if (!l) return NULL;
    for (int i = 0; i < MV_ISA_COUNT; i++)
        if (mv_isa_supported((mv_isa)i)) {
            PyObject *s = PyUnicode_FromString(mv_isa_name((mv_isa)i));
            if (!s || PyList_Append(l, s) < 0) { Py_XDECREF(s); Py_DECREF(l); return NULL; }
            Py_DECREF(s);
        }
    return l;
}

static PyObject *py_best_isa(PyObject *self, PyObject *noargs) {
    return PyUnicode_FromString(mv_isa_name(mv_detect_isa()));
}

static PyObject *py_set_num_threads(PyObject *self, PyObject *args) {
    int n;
    if (!PyArg_ParseTuple(args, "i", &n)) return NULL;
    if (n < 1 || n > MV_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "num_threads must be between 1 and %d, got %d", MV_MAX_THREADS, n);
        return NULL;
    }
    atomic_store(&g_threads, n);
    Py_RETURN_NONE;
}

static int parse_threads(int nth);
static PyObject *py_get_num_threads(PyObject *self, PyObject *noargs) {
    return PyLong_FromLong(parse_threads(0));
}

static PyObject *py_forked_child(PyObject *self, PyObject *noargs) {
    return PyBool_FromLong(atomic_load(&g_forked_child));
}

static PyObject *py_has_openmp(PyObject *self, PyObject *noargs) {
#ifdef _OPENMP
    Py_RETURN_TRUE;
#else
    Py_RETURN_FALSE;
#endif
}

/* ---- single ops (for tests and notebooks) -------------------------------- */

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
    mv_gemm_args a = {M, N, K, F(A), K, Wp, Bi ? F(Bi) : NULL, R ? F(R) : NULL, N, F(C), N, act};
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
 * algo: 0 as a graph would (Winograd where eligible), 1 implicit GEMM,
 * 2 Winograd (3x3, stride 1, pad 1, dilation 1, no residual only). */
static PyObject *py_conv2d(PyObject *self, PyObject *args) {
    PyObject *xo, *wo, *bo, *x2o, *ro;
    int stride, pad, dil, act, isa, nth, algo = 0, e1 = 0, e2 = 0, e3 = 0;
    if (!PyArg_ParseTuple(args, "OOOiiiiOOii|i", &xo, &wo, &bo, &stride, &pad, &dil, &act, &x2o, &ro, &isa, &nth,
                          &algo))
        return NULL;
    if (check_isa(isa) < 0) return NULL;
    if (algo < 0 || algo > 2) { PyErr_SetString(PyExc_ValueError, "conv2d: algorithm must be 0 (auto), 1 (direct) or 2 (winograd)"); return NULL; }
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
    if (algo == 2 && !wino_ok) {
        PyErr_SetString(PyExc_ValueError, "conv2d: Winograd needs a 3x3 kernel, stride 1, padding 1, dilation 1 and no residual");
        goto done;
    }
    int wino = algo == 2 || (algo == 0 && wino_ok && mv_conv3x3_wino_pays(C1 + C2, Co));
    npy_intp dims[4] = {B, OH, OW, Co};
    if (!(Y = new_f32(4, dims))) goto done;
    int n = parse_threads(nth);
    size_t per = wino ? mv_conv3x3_wino_scratch_floats(H, Wd, C1 + C2, Co, 1) : 0;
    size_t wfloats = wino ? mv_conv3x3_wino_packed_floats(C1 + C2, Co) : mv_conv2d_packed_floats(kh, kw, C1 + C2, Co);
    Wp = mv_aligned_alloc(wfloats * sizeof(float));
    zero = mv_aligned_alloc((size_t)(C1 + C2 + 16) * sizeof(float));
    if (wino) {
        tmp = mv_aligned_alloc((size_t)Co * (C1 + C2) * sizeof(float));
        scratch = mv_aligned_alloc(per * (size_t)n * sizeof(float));
    }
    if (!Wp || !zero || (wino && (!tmp || !scratch))) { PyErr_NoMemory(); goto done; }
    memset(zero, 0, (size_t)(C1 + C2 + 16) * sizeof(float));
    mv_conv2d_args a = {B, H, Wd, C1, F(X), C1, C2, X2 ? F(X2) : NULL, C2, OH, OW, Co, kh, kw, stride, pad, dil,
                        Wp, Bi ? F(Bi) : NULL, R ? F(R) : NULL, Co, F(Y), Co, act, zero, scratch};
    const mv_kernel_table *kt = mv_kernels(parse_isa(isa));
    conv_task t = {&a, wino ? kt->conv3x3_wino : kt->conv2d, per};
    if (PyArray_SIZE(Y) > 0) {
        Py_BEGIN_ALLOW_THREADS
        if (wino) mv_pack_conv3x3_wino_weights(F(W), Co, C1 + C2, tmp, Wp);
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
    mv_dwconv2d_args a = {B, H, Wd, C, F(X), OH, OW, stride, pad, dil, Wt, Bi ? F(Bi) : NULL, F(Y), act};
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
    mv_attention_args a = {B, H, W, ph, pw, C3 / 3, heads, scale, F(Q), C3, F(O), C3 / 3, scratch};
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
    mv_sep_attention_args a = {B, H, W, ph, pw, D, F(Q), C, F(O), D, scratch};
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

enum { K_LN, K_GN, K_BN, K_ACT, K_ADD, K_CAT, K_UNF, K_FOLD, K_RESIZE, K_GAP, K_N2H, K_H2N, K_CROP };

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
    case K_GAP: mv_gap_nhwc_f32__ref(t->x, t->B, (ptrdiff_t)t->H * t->W, t->C, t->C, t->y, tid, nth); break;
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
    argmax_task t = {F(X), (int64_t *)PyArray_DATA(L), DIM(X, 0), DIM(X, 1), DIM(X, 2), DIM(X, 3), OH, OW, ac};
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

/* gap(x[B,H,W,C], nth) -> [B,C] */
static PyObject *py_gap(PyObject *self, PyObject *args) {
    PyObject *xo;
    int nth;
    if (!PyArg_ParseTuple(args, "Oi", &xo, &nth)) return NULL;
    PyArrayObject *X = as_f32(xo, 4, "x"), *Y = NULL;
    PyObject *ret = NULL;
    if (!X) return NULL;
    if (DIM(X, 1) < 1 || DIM(X, 2) < 1) { PyErr_SetString(PyExc_ValueError, "gap: empty feature map"); goto done; }
    npy_intp dims[2] = {DIM(X, 0), DIM(X, 3)};
    if (!(Y = new_f32(2, dims))) goto done;
    misc_task t = {.kind = K_GAP, .x = F(X), .y = F(Y), .B = DIM(X, 0), .H = DIM(X, 1), .W = DIM(X, 2), .C = DIM(X, 3)};
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

/* ---- Graph: a whole network ------------------------------------------------ */
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
    {MV_OP_GAP, "global_avg_pool", no_fields},
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
    PyObject *xo, *ids_o, *prof = NULL;
    long long nth_arg = 0;
    int check_finite = 0;
    char err[256] = "";
    if (!PyArg_ParseTuple(args, "OO|LOp", &xo, &ids_o, &nth_arg, &prof, &check_finite)) return NULL;
    GRAPH_READY(self);
    if (nth_arg < 0 || nth_arg > MV_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "num_threads must be between 1 and %d (0: the module setting), got %lld",
                     MV_MAX_THREADS, nth_arg);
        return NULL;
    }
    if (prof == Py_None) prof = NULL;
    if (prof && !PyList_Check(prof)) { PyErr_SetString(PyExc_TypeError, "profile must be a list"); return NULL; }
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
    int finite = 1;
    if (nth > 1 && B > 0) atomic_store(&g_omp_used, 1);
    Py_BEGIN_ALLOW_THREADS
    if (check_finite) finite = all_finite(F(X), (size_t)PyArray_SIZE(X));
    st = finite ? mv_session_run(&call, F(X), dst, (mv_isa)atomic_load(&g_isa), times) : MV_OK;
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
    free(times);
    Py_DECREF(X);
    mv_session_end(&call);
    return outs;
fail:
    free(times);
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
    {"run", (PyCFunction)Graph_run, METH_VARARGS, "run(x_nchw, output_ids, num_threads=0, profile=None, check_finite=False) -> list of NCHW arrays; profile: a list that receives each node's seconds"},
    {"plan_bytes", (PyCFunction)Graph_plan_bytes, METH_VARARGS, "plan_bytes(B, H, W, num_threads=0) -> activation bytes a call of that shape allocates"},
    {"node_modes", (PyCFunction)Graph_node_modes, METH_VARARGS, "node_modes(B, H, W) -> per node: MODE_ALONE, MODE_FUSED_HEAD, MODE_FUSED_INNER or MODE_FUSED_TAIL"},
    {"set_max_bytes", (PyCFunction)Graph_set_max_bytes, METH_VARARGS, "cap on activation bytes (0 = none)"},
    {"release", (PyCFunction)Graph_release, METH_NOARGS, "free the cached activation arena"},
    {"set_winograd", (PyCFunction)Graph_set_winograd, METH_VARARGS, "set_winograd(on): eligible 3x3 convs by Winograd F(2x2,3x3) (default) or implicit GEMM"},
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

static PyMethodDef methods[] = {
    {"set_isa", py_set_isa, METH_VARARGS, NULL},
    {"get_isa", py_get_isa, METH_NOARGS, NULL},
    {"best_isa", py_best_isa, METH_NOARGS, NULL},
    {"available_isas", py_available_isas, METH_NOARGS, NULL},
    {"set_num_threads", py_set_num_threads, METH_VARARGS, NULL},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, NULL},
    {"has_openmp", py_has_openmp, METH_NOARGS, NULL},
    {"forked_child", py_forked_child, METH_NOARGS, NULL},
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
    {"gap", py_gap, METH_VARARGS, NULL},
    {"nchw_to_nhwc", py_nchw_to_nhwc, METH_VARARGS, NULL},
    {"nhwc_to_nchw", py_nhwc_to_nchw, METH_VARARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_C", "mobilevit C core", -1, methods,
};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    if (PyType_Ready(&GraphType) < 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    Py_INCREF(&GraphType);
    if (PyModule_AddObject(m, "Graph", (PyObject *)&GraphType) < 0) { Py_DECREF(&GraphType); Py_DECREF(m); return NULL; }
    atomic_store(&g_isa, (int)mv_detect_isa());
    pthread_atfork(NULL, NULL, mv_atfork_child);
    {   /* OMP_NUM_THREADS (through libgomp), kept within what a call may use */
        int n = max_threads_default();
        atomic_store(&g_threads, n < 1 ? 1 : n > MV_MAX_THREADS ? MV_MAX_THREADS : n);
    }
    if (PyModule_AddIntConstant(m, "MAX_THREADS", MV_MAX_THREADS) < 0) { Py_DECREF(m); return NULL; }
    if (add_node_tables(m) < 0 ||
        PyModule_AddIntConstant(m, "MODE_ALONE", MV_MODE_ALONE) < 0 ||
        PyModule_AddIntConstant(m, "MODE_FUSED_HEAD", MV_MODE_HEAD) < 0 ||
        PyModule_AddIntConstant(m, "MODE_FUSED_INNER", MV_MODE_INNER) < 0 ||
        PyModule_AddIntConstant(m, "MODE_FUSED_TAIL", MV_MODE_TAIL) < 0 ||
        PyModule_AddObject(m, "FUSE_MIN_BYTES", PyLong_FromSize_t(MV_FUSE_MIN_BYTES)) < 0) {
        Py_DECREF(m); return NULL;
    }
    PyModule_AddIntConstant(m, "ISA_REF", MV_ISA_REF);
    PyModule_AddIntConstant(m, "ISA_AVX2", MV_ISA_AVX2);
    PyModule_AddIntConstant(m, "ISA_AVX512", MV_ISA_AVX512);
    PyModule_AddIntConstant(m, "ACT_NONE", MV_ACT_NONE);
    PyModule_AddIntConstant(m, "ACT_SILU", MV_ACT_SILU);
    PyModule_AddIntConstant(m, "ACT_RELU", MV_ACT_RELU);
    return m;
}
