/* module.c - PyInit__C: the module mobilevit._C assembled from the binding's
 * files (see binding.h). */
#define MV_BINDING_MAIN   /* the one file that runs import_array() */
#include "binding.h"

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_C", "mobilevit C core", -1, NULL, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__C(void) {
    import_array();
    PyObject *m = PyModule_Create(&moduledef);
    if (!m) return NULL;
    if (mv_settings_init(m) < 0 || PyModule_AddFunctions(m, mv_op_methods) < 0 || mv_graph_type_add(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
