/* The hot path of `hax.jit` in C: match a call against a compiled entry and build a
 * result of a known structure, walking plain dicts, lists and tuples without running
 * Python bytecode. `hax/_pytree_code.py` writes the programs these functions follow
 * and holds the pure-Python version of both (used when this module is not built).
 *
 * A program is a tree of tuples, one per pytree node, in jax's leaf order:
 *   (DICT, keys, children[, template, rest])   (LIST, children)   (TUPLE, children)   (NONE,)
 *   (STATIC, value)          (WHOLE, value, whole)
 *   (ARRAY, slot)            (OPAQUE, treedef, leaf programs)
 * For `match`, an ARRAY slot is 0 (donated) or 1 (kept); for `build`, an ARRAY takes
 * the next of the compiled function's outputs, and a DICT also carries a template (a
 * dict with the keys in order and the static children's values) and the indices of
 * the other children: copying a small dict is quicker than filling a new one. Equal
 * subprograms are one object, so a stack of equal layers reads one layer's program.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifdef Py_GIL_DISABLED
/* The walk reads dicts through borrowed references, which needs the GIL: on a
 * free-threaded Python the build hook's compile fails and HAX uses its Python code. */
#error "hax._fastpath needs a Python with the GIL"
#endif

enum { DICT = 0, LIST = 1, TUPLE = 2, NONE = 3, STATIC = 4, WHOLE = 5, ARRAY = 6, OPAQUE = 7 };

/* The ints a program holds most (op codes, list slots, the first children's indices) are
 * CPython's cached small int objects: reading one is a few pointer comparisons, where the
 * walk would otherwise call PyLong_AsSsize_t at every node. Filled at import. */
#define SMALL_INTS 8
static PyObject *small_ints[SMALL_INTS];

/* The value of an int of a program (a non-negative op code or index). */
static inline Py_ssize_t small(PyObject *obj) {
    for (Py_ssize_t k = 0; k < SMALL_INTS; k++)
        if (obj == small_ints[k])
            return k;
    return PyLong_AsSsize_t(obj);
}

/* Containers nest at most this deep in a program: programs come from jax's treedefs, and
 * jax's own pytree functions stop near 1,000. A depth of its own (not Python's recursion
 * limit, which the caller's frames share) so that a deep tree works at any call depth. */
#define MAX_DEPTH 2000

/* How many children of a dict are looked up and fetched before they are matched. */
#define CHUNK 16

#if defined(__GNUC__) || defined(__clang__)
#define PREFETCH(p) __builtin_prefetch(p)
#else
#define PREFETCH(p) ((void)(p))
#endif

/* What `match` needs besides the program (the context tuple of `_native_matcher` in
 * _pytree_code.py), and the lists it fills. */
typedef struct {
    PyObject *array_types; /* a tuple of the exact types checked first */
    PyObject *is_array;    /* is_array(x) -> bool, for any other type */
    PyObject *same;        /* same(a, b) -> bool, for statics that are not identical */
    PyObject *flatten;     /* flatten(x, None) -> (leaves, treedef), for OPAQUE nodes */
    PyObject *value_name;  /* "value" (the attribute of a Whole) */
    PyObject *lists[2];    /* the donated and kept arrays, in order (presized) */
    Py_ssize_t filled[2];  /* how many of each are in place */
} Match;

/* 1: matches; 0: does not (or raised an Exception, cleared); -1: a BaseException that is
 * not an Exception (KeyboardInterrupt...), left set. */
static int mismatch_or_error(void) {
    if (PyErr_ExceptionMatches(PyExc_Exception)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
}

static int truth(PyObject *result) {
    if (result == NULL)
        return mismatch_or_error();
    int ok = PyObject_IsTrue(result);
    Py_DECREF(result);
    return ok < 0 ? mismatch_or_error() : ok;
}

static int match_node(Match *m, PyObject *prog, PyObject *obj, int depth);

static int match_children(Match *m, PyObject *progs, PyObject *const *items, Py_ssize_t n,
                          int depth) {
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = items[i];
        Py_INCREF(item); /* a Python __eq__ below could drop it from its container */
        int ok = match_node(m, PyTuple_GET_ITEM(progs, i), item, depth);
        Py_DECREF(item);
        if (ok != 1)
            return ok;
    }
    return 1;
}

static int match_node(Match *m, PyObject *prog, PyObject *obj, int depth) {
    long op = (long)small(PyTuple_GET_ITEM(prog, 0));
    if (++depth > MAX_DEPTH)
        return 0; /* the generic path will say what is wrong */
    switch (op) {
    case DICT: {
        PyObject *keys = PyTuple_GET_ITEM(prog, 1), *progs = PyTuple_GET_ITEM(prog, 2);
        Py_ssize_t n = PyTuple_GET_SIZE(keys);
        if (!PyDict_CheckExact(obj) || PyDict_GET_SIZE(obj) != n)
            return 0;
        /* In chunks: look the children up, then ask the CPU for their headers and (for
         * dicts) their key tables, then match them. The walk is bound by memory latency
         * (a tree's dicts lie scattered in memory), and fetches issued together overlap.
         * The children are held while matched: a Python __eq__ could mutate `obj`. */
        PyObject *values[CHUNK];
        for (Py_ssize_t start = 0; start < n; start += CHUNK) {
            Py_ssize_t count = n - start < CHUNK ? n - start : CHUNK;
            for (Py_ssize_t i = 0; i < count; i++) {
                PyObject *value = PyDict_GetItemWithError(obj, PyTuple_GET_ITEM(keys, start + i));
                if (value == NULL) {
                    for (Py_ssize_t j = 0; j < i; j++)
                        Py_DECREF(values[j]);
                    return PyErr_Occurred() ? mismatch_or_error() : 0;
                }
                Py_INCREF(value);
                PREFETCH(value);
                values[i] = value;
            }
            for (Py_ssize_t i = 0; i < count; i++)
                if (PyDict_CheckExact(values[i]))
                    PREFETCH(((PyDictObject *)values[i])->ma_keys);
            int ok = 1;
            for (Py_ssize_t i = 0; i < count && ok == 1; i++)
                ok = match_node(m, PyTuple_GET_ITEM(progs, start + i), values[i], depth);
            for (Py_ssize_t i = 0; i < count; i++)
                Py_DECREF(values[i]);
            if (ok != 1)
                return ok;
        }
        return 1;
    }
    case LIST:
    case TUPLE: {
        PyObject *progs = PyTuple_GET_ITEM(prog, 1);
        Py_ssize_t n = PyTuple_GET_SIZE(progs);
        if (op == LIST ? !PyList_CheckExact(obj) : !PyTuple_CheckExact(obj))
            return 0;
        if (Py_SIZE(obj) != n)
            return 0;
        if (n == 0)
            return 1;
        if (op == TUPLE)
            return match_children(m, progs, &PyTuple_GET_ITEM(obj, 0), n, depth);
        PyObject *items = PyList_AsTuple(obj); /* a snapshot: a Python __eq__ could resize it */
        if (items == NULL)
            return mismatch_or_error();
        int ok = match_children(m, progs, &PyTuple_GET_ITEM(items, 0), n, depth);
        Py_DECREF(items);
        return ok;
    }
    case NONE:
        return obj == Py_None;
    case STATIC: {
        PyObject *value = PyTuple_GET_ITEM(prog, 1);
        if (obj == value)
            return 1;
        return truth(PyObject_CallFunctionObjArgs(m->same, obj, value, NULL));
    }
    case WHOLE: { /* an argument named in static_argnames: the call holds a Whole too */
        PyObject *inner = PyObject_GetAttr(obj, m->value_name);
        if (inner == NULL)
            return mismatch_or_error();
        Py_DECREF(inner); /* only its identity is used */
        if (inner == PyTuple_GET_ITEM(prog, 1))
            return 1;
        int eq = PyObject_RichCompareBool(obj, PyTuple_GET_ITEM(prog, 2), Py_EQ);
        return eq < 0 ? mismatch_or_error() : eq;
    }
    case ARRAY: {
        int known = 0;
        for (Py_ssize_t i = 0; i < PyTuple_GET_SIZE(m->array_types) && !known; i++)
            known = (PyObject *)Py_TYPE(obj) == PyTuple_GET_ITEM(m->array_types, i);
        if (!known) {
            int ok = truth(PyObject_CallOneArg(m->is_array, obj));
            if (ok != 1)
                return ok;
        }
        Py_ssize_t slot = small(PyTuple_GET_ITEM(prog, 1));
        if (slot != 0 && slot != 1) {
            if (!PyErr_Occurred())
                PyErr_SetString(PyExc_SystemError, "hax._fastpath: an array slot is 0 or 1");
            return -1;
        }
        PyObject *list = m->lists[slot];
        if (m->filled[slot] >= PyList_GET_SIZE(list)) {
            PyErr_SetString(PyExc_SystemError, "hax._fastpath: more arrays than the program");
            return -1;
        }
        PyList_SET_ITEM(list, m->filled[slot]++, Py_NewRef(obj));
        return 1;
    }
    case OPAQUE: { /* a registered pytree node: jax flattens it */
        PyObject *flat = PyObject_CallFunctionObjArgs(m->flatten, obj, Py_None, NULL);
        if (flat == NULL)
            return mismatch_or_error();
        int ok = 0;
        PyObject *leaves = NULL;
        if (PyTuple_Check(flat) && PyTuple_GET_SIZE(flat) == 2) {
            int eq = PyObject_RichCompareBool(PyTuple_GET_ITEM(flat, 1), PyTuple_GET_ITEM(prog, 1),
                                              Py_EQ);
            ok = eq < 0 ? mismatch_or_error() : eq;
            if (ok == 1) {
                leaves = PySequence_Tuple(PyTuple_GET_ITEM(flat, 0));
                if (leaves == NULL)
                    ok = mismatch_or_error();
            }
        }
        Py_DECREF(flat);
        if (ok == 1) {
            PyObject *progs = PyTuple_GET_ITEM(prog, 2);
            Py_ssize_t n = PyTuple_GET_SIZE(progs);
            ok = PyTuple_GET_SIZE(leaves) != n
                     ? 0
                     : (n ? match_children(m, progs, &PyTuple_GET_ITEM(leaves, 0), n, depth) : 1);
        }
        Py_XDECREF(leaves);
        return ok;
    }
    }
    PyErr_Format(PyExc_SystemError, "hax._fastpath: unknown program op %ld", op);
    return -1;
}

/* match(args_program, kwargs_program, context, args, kwargs) -> (donated, kept) | None
 * `context` ends with how many arrays go to each list. */
static PyObject *match(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5 || !PyTuple_Check(args[2]) || PyTuple_GET_SIZE(args[2]) != 7 ||
        !PyTuple_Check(PyTuple_GET_ITEM(args[2], 0))) {
        PyErr_SetString(PyExc_TypeError,
                        "match(args_program, kwargs_program, context, args, kwargs)");
        return NULL;
    }
    PyObject *ctx = args[2];
    Py_ssize_t sizes[2] = {PyLong_AsSsize_t(PyTuple_GET_ITEM(ctx, 5)),
                           PyLong_AsSsize_t(PyTuple_GET_ITEM(ctx, 6))};
    if (sizes[0] < 0 || sizes[1] < 0) {
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_ValueError, "match: negative list sizes");
        return NULL;
    }
    Match m = {PyTuple_GET_ITEM(ctx, 0),
               PyTuple_GET_ITEM(ctx, 1),
               PyTuple_GET_ITEM(ctx, 2),
               PyTuple_GET_ITEM(ctx, 3),
               PyTuple_GET_ITEM(ctx, 4),
               {PyList_New(sizes[0]), PyList_New(sizes[1])},
               {0, 0}};
    PyObject *result = NULL;
    if (m.lists[0] != NULL && m.lists[1] != NULL) {
        int ok = match_node(&m, args[0], args[3], 0);
        if (ok == 1)
            ok = match_node(&m, args[1], args[4], 0);
        if (ok == 1 && (m.filled[0] != sizes[0] || m.filled[1] != sizes[1])) {
            PyErr_SetString(PyExc_SystemError, "hax._fastpath: fewer arrays than the program");
            ok = -1;
        }
        if (ok == 1)
            result = PyTuple_Pack(2, m.lists[0], m.lists[1]);
        else if (ok == 0)
            result = Py_NewRef(Py_None);
    }
    Py_XDECREF(m.lists[0]);
    Py_XDECREF(m.lists[1]);
    return result;
}

static PyObject *build_node(PyObject *prog, PyObject *outs, Py_ssize_t *next, int depth);

/* A new list (or tuple) of the objects `progs` build. */
static PyObject *build_items(PyObject *progs, PyObject *outs, Py_ssize_t *next, int depth,
                             int as_list) {
    Py_ssize_t n = PyTuple_GET_SIZE(progs);
    PyObject *seq = as_list ? PyList_New(n) : PyTuple_New(n);
    if (seq == NULL)
        return NULL;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = build_node(PyTuple_GET_ITEM(progs, i), outs, next, depth);
        if (item == NULL) {
            Py_DECREF(seq);
            return NULL;
        }
        if (as_list)
            PyList_SET_ITEM(seq, i, item);
        else
            PyTuple_SET_ITEM(seq, i, item);
    }
    return seq;
}

static PyObject *build_node(PyObject *prog, PyObject *outs, Py_ssize_t *next, int depth) {
    long op = (long)small(PyTuple_GET_ITEM(prog, 0));
    if (++depth > MAX_DEPTH) {
        PyErr_SetString(PyExc_RecursionError, "hax.jit: a result nests too deeply to build");
        return NULL;
    }
    switch (op) {
    case DICT: { /* a copy of the template (its static values in place), then the rest */
        PyObject *keys = PyTuple_GET_ITEM(prog, 1), *progs = PyTuple_GET_ITEM(prog, 2);
        PyObject *rest = PyTuple_GET_ITEM(prog, 4);
        PyObject *dict = PyDict_Copy(PyTuple_GET_ITEM(prog, 3));
        if (dict == NULL)
            return NULL;
        for (Py_ssize_t j = 0; j < PyTuple_GET_SIZE(rest); j++) {
            Py_ssize_t i = small(PyTuple_GET_ITEM(rest, j));
            PyObject *value = build_node(PyTuple_GET_ITEM(progs, i), outs, next, depth);
            if (value == NULL || PyDict_SetItem(dict, PyTuple_GET_ITEM(keys, i), value) < 0) {
                Py_XDECREF(value);
                Py_DECREF(dict);
                return NULL;
            }
            Py_DECREF(value);
        }
        return dict;
    }
    case LIST:
    case TUPLE:
        return build_items(PyTuple_GET_ITEM(prog, 1), outs, next, depth, op == LIST);
    case NONE:
        return Py_NewRef(Py_None);
    case STATIC:
        return Py_NewRef(PyTuple_GET_ITEM(prog, 1));
    case ARRAY:
        if (*next >= PyTuple_GET_SIZE(outs)) {
            PyErr_SetString(PyExc_SystemError, "hax._fastpath: fewer outputs than the program");
            return NULL;
        }
        return Py_NewRef(PyTuple_GET_ITEM(outs, (*next)++));
    case OPAQUE: {
        PyObject *leaves = build_items(PyTuple_GET_ITEM(prog, 2), outs, next, depth, 1);
        if (leaves == NULL)
            return NULL;
        PyObject *node = PyObject_CallMethod(PyTuple_GET_ITEM(prog, 1), "unflatten", "O", leaves);
        Py_DECREF(leaves);
        return node;
    }
    }
    PyErr_Format(PyExc_SystemError, "hax._fastpath: unknown program op %ld", op);
    return NULL;
}

/* build(program, outputs: tuple) -> object */
static PyObject *build(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 2 || !PyTuple_Check(args[1])) {
        PyErr_SetString(PyExc_TypeError, "build(program, outputs: tuple)");
        return NULL;
    }
    Py_ssize_t next = 0;
    PyObject *result = build_node(args[0], args[1], &next, 0);
    if (result != NULL && next != PyTuple_GET_SIZE(args[1])) {
        Py_DECREF(result);
        PyErr_SetString(PyExc_SystemError, "hax._fastpath: more outputs than the program");
        return NULL;
    }
    return result;
}

static PyMethodDef methods[] = {
    {"match", (PyCFunction)(void (*)(void))match, METH_FASTCALL,
     "match(args_program, kwargs_program, context, args, kwargs) -> (donated, kept) | None"},
    {"build", (PyCFunction)(void (*)(void))build, METH_FASTCALL,
     "build(program, outputs) -> object"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "hax._fastpath", "hax.jit's matcher and builder, in C.", -1, methods,
    NULL, NULL, NULL, NULL};

/* The version of the program format above: `hax._pytree_code` uses this module only
 * when it finds the format it writes (an install built from older sources is skipped). */
#define FORMAT 3

PyMODINIT_FUNC PyInit__fastpath(void) {
    for (long k = 0; k < SMALL_INTS; k++) {
        Py_XSETREF(small_ints[k], PyLong_FromLong(k));
        if (small_ints[k] == NULL)
            return NULL;
    }
    PyObject *mod = PyModule_Create(&module);
    if (mod != NULL && PyModule_AddIntConstant(mod, "FORMAT", FORMAT) < 0)
        Py_CLEAR(mod);
    return mod;
}
