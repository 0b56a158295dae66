/* settings.c - process-wide settings: the kernel path (ISA), the default
 * thread count, and what a forked child may do. */
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

#define MV_STR_(x) #x
#define MV_STR(x) MV_STR_(x)
#if defined(__clang__) && defined(__apple_build_version__)
#define MV_COMPILER "Apple clang " __clang_version__
#elif defined(__clang__)
#define MV_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define MV_COMPILER "gcc " __VERSION__
#elif defined(_MSC_VER)
#define MV_COMPILER "MSVC " MV_STR(_MSC_FULL_VER)
#else
#define MV_COMPILER "unknown"
#endif

/* build_info() -> dict: what this binary was compiled with (what the CPU
 * can run is available_isas).  openmp is the _OPENMP date of the OpenMP
 * version (e.g. 201511 for 4.5), 0 for a single-threaded build. */
static PyObject *py_build_info(PyObject *self, PyObject *noargs) {
#ifdef _OPENMP
    long omp = (long)_OPENMP;
#else
    long omp = 0;
#endif
    char cc[128];          /* without the trailing blank of __clang_version__ */
    snprintf(cc, sizeof cc, "%s", MV_COMPILER);
    for (size_t n = strlen(cc); n > 0 && cc[n - 1] == ' '; n--) cc[n - 1] = 0;
    return Py_BuildValue("{s:s,s:l}", "compiler", cc, "openmp", omp);
}

PyMethodDef mv_settings_methods[] = {
    {"build_info", py_build_info, METH_NOARGS, "build_info() -> dict: compiler, OpenMP version (0: none)"},
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
#ifdef MV_HAVE_FORK
    pthread_atfork(NULL, NULL, mv_atfork_child);
#endif
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
