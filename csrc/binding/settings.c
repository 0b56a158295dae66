/* settings.c - process-wide settings: the kernel path (ISA), the default
 * thread count, and what a forked child may do. */
#include <pthread.h>
#include "binding.h"

atomic_int g_isa = MV_ISA_REF;
atomic_int g_threads = 1;
atomic_int g_omp_used = 0;
atomic_int g_forked_child = 0;

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


/* set_isa(name): "ref", "avx2", "avx512" or "neon" (get_isa's names) */
static PyObject *py_set_isa(PyObject *self, PyObject *args) {
    const char *name;
    if (!PyArg_ParseTuple(args, "s", &name)) return NULL;
    for (int i = 0; i < MV_ISA_COUNT; i++)
        if (!strcmp(name, mv_isa_name((mv_isa)i))) {
            if (!mv_isa_supported((mv_isa)i)) {
                PyErr_Format(PyExc_ValueError, "ISA '%s' is not supported by this CPU", name);
                return NULL;
            }
            atomic_store(&g_isa, i);
            Py_RETURN_NONE;
        }
    PyErr_Format(PyExc_ValueError, "unknown ISA '%s'", name);
    return NULL;
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

PyMethodDef mv_settings_methods[] = {
    {"set_isa", py_set_isa, METH_VARARGS, "set_isa(name): the kernel path of calls that do not name one"},
    {"get_isa", py_get_isa, METH_NOARGS, "get_isa() -> name of the current kernel path"},
    {"best_isa", py_best_isa, METH_NOARGS, "best_isa() -> the fastest path this CPU supports"},
    {"available_isas", py_available_isas, METH_NOARGS, "available_isas() -> names this CPU supports"},
    {"set_num_threads", py_set_num_threads, METH_VARARGS, "set_num_threads(n), 1 <= n <= MAX_THREADS"},
    {"get_num_threads", py_get_num_threads, METH_NOARGS, "get_num_threads() -> workers a call uses by default"},
    {"has_openmp", py_has_openmp, METH_NOARGS, "has_openmp() -> whether the build is multi-threaded"},
    {"forked_child", py_forked_child, METH_NOARGS, "forked_child() -> whether this process runs single-threaded after fork"},
    {NULL, NULL, 0, NULL},
};

int mv_settings_init(PyObject *m) {
    atomic_store(&g_isa, (int)mv_detect_isa());
    pthread_atfork(NULL, NULL, mv_atfork_child);
    {   /* OMP_NUM_THREADS (through libgomp), kept within what a call may use */
        int n = max_threads_default();
        atomic_store(&g_threads, n < 1 ? 1 : n > MV_MAX_THREADS ? MV_MAX_THREADS : n);
    }
    if (PyModule_AddIntConstant(m, "MAX_THREADS", MV_MAX_THREADS) < 0 ||
        PyModule_AddIntConstant(m, "ISA_REF", MV_ISA_REF) < 0 ||
        PyModule_AddIntConstant(m, "ISA_AVX2", MV_ISA_AVX2) < 0 ||
        PyModule_AddIntConstant(m, "ISA_AVX512", MV_ISA_AVX512) < 0 ||
        PyModule_AddIntConstant(m, "ISA_NEON", MV_ISA_NEON) < 0 ||
        PyModule_AddIntConstant(m, "ACT_NONE", MV_ACT_NONE) < 0 ||
        PyModule_AddIntConstant(m, "ACT_SILU", MV_ACT_SILU) < 0 ||
        PyModule_AddIntConstant(m, "ACT_RELU", MV_ACT_RELU) < 0)
        return -1;
    return PyModule_AddFunctions(m, mv_settings_methods);
}
