/* binding.h - what the files of the CPython binding (mobilevit._C) share.
 * csrc/binding/ is the only place that includes Python.h: the C core
 * (ops/, model/) never touches Python objects.  Each binding function parses
 * and validates its arguments with the GIL held, releases the GIL around pure
 * C work, and maps mv_status to a Python exception (Pillow-sized wrappers).
 *
 *   module.c    PyInit__C: assembles the module from the files below
 *   settings.c  ISA and thread settings, fork handling
 *   ops.c       single kernels, for tests and notebooks (mobilevit.ops)
 *   graph.c     the Graph type: named-field node descriptions, run policy
 *               through model/session.h */
#ifndef MV_BINDING_H
#define MV_BINDING_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#define PY_ARRAY_UNIQUE_SYMBOL mv_numpy_api
#ifndef MV_BINDING_MAIN
#define NO_IMPORT_ARRAY        /* import_array() runs once, in module.c */
#endif
#include <numpy/arrayobject.h>
#include <limits.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#include "../ops/ops.h"
#include "../model/graph.h"
#include "../model/session.h"

#define MV_MAX_CONV_PARAM 65536   /* stride / padding / dilation cap (keeps sizes in range) */
/* Most worker threads a call may ask for (set_num_threads, num_threads=,
 * OMP_NUM_THREADS).  Above it libgomp may fail to create the team and then
 * calls exit() (gomp_fatal), taking the interpreter down; per-worker scratch
 * also grows with the count.  Requests above it are refused, never passed on. */
#define MV_MAX_THREADS 1024

/* settings.c: the process-wide settings, read once per call */
extern atomic_int g_isa;          /* mv_isa of calls that do not name one */
extern atomic_int g_threads;      /* default worker count */
/* libgomp's thread pool does not survive fork(): a child forked after the
 * parent ran a parallel region would hang in its first one.  Children run
 * single-threaded instead (see run_parallel / mv_session_begin). */
extern atomic_int g_omp_used;
extern atomic_int g_forked_child;
extern PyMethodDef mv_settings_methods[];
int mv_settings_init(PyObject *m);

/* ops.c */
extern PyMethodDef mv_op_methods[];

/* graph.c */
int mv_graph_type_add(PyObject *m);

typedef void (*task_fn)(void *ctx, int tid, int nth);

static inline void run_parallel(task_fn f, void *ctx, int nth) {
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

static inline int set_status_error(mv_status st, const char *msg) {
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
static inline PyArrayObject *as_f32(PyObject *obj, int ndim, const char *name) {
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

static inline PyArrayObject *opt_f32(PyObject *obj, int ndim, const char *name, int *err) {
    *err = 0;
    if (obj == NULL || obj == Py_None) return NULL;
    PyArrayObject *a = as_f32(obj, ndim, name);
    if (!a) *err = 1;
    return a;
}

static inline PyArrayObject *new_f32(int ndim, const npy_intp *dims) {
    return (PyArrayObject *)PyArray_SimpleNew(ndim, (npy_intp *)dims, NPY_FLOAT32);
}

#define F(a) ((float *)PyArray_DATA(a))
#define DIM(a, i) ((int)PyArray_DIM(a, i))

static inline mv_isa parse_isa(int isa) {
    if (isa < 0) return (mv_isa)atomic_load(&g_isa);
    return (mv_isa)isa;
}

static inline int check_isa(int isa) {
    if (isa >= MV_ISA_COUNT || (isa >= 0 && !mv_isa_supported((mv_isa)isa))) {
        if (isa < MV_ISA_COUNT)
            PyErr_Format(PyExc_ValueError, "ISA '%s' is not available on this CPU", mv_isa_name((mv_isa)isa));
        else
            PyErr_Format(PyExc_ValueError, "ISA %d is not available on this CPU", isa);
        return -1;
    }
    return 0;
}

/* Worker count for a call: nth > 0 as asked (the Python layer has checked
 * the range; clamped here again so nothing larger ever reaches OpenMP),
 * else the module setting; 1 in a forked child and in a build without
 * OpenMP (set_num_threads still accepts and stores 1..MAX_THREADS there). */
static inline int parse_threads(int nth) {
#ifdef _OPENMP
    if (atomic_load(&g_forked_child)) return 1;
    int n = nth > 0 ? nth : atomic_load(&g_threads);
    return n > MV_MAX_THREADS ? MV_MAX_THREADS : n;
#else
    (void)nth;
    return 1;              /* single-threaded build: every call runs one worker */
#endif
}

/* num_threads argument of a call: 0 = the module setting, else 1..MV_MAX_THREADS. */
static inline int check_threads_arg(int nth) {
    if (nth < 0 || nth > MV_MAX_THREADS) {
        PyErr_Format(PyExc_ValueError, "num_threads must be between 1 and %d, got %d", MV_MAX_THREADS, nth);
        return -1;
    }
    return 0;
}

#endif /* MV_BINDING_H */
