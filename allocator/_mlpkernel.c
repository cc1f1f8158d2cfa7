/* The learned allocator's decision on one state, compiled: the forward pass of
 * allocator.learned.MLPPolicyNetwork without numpy's per-call overhead.
 *
 * A Kernel holds float64 copies of a bundle's dense layers and its observation
 * normalisation; it is built once (never re-initialised). Kernel.act(features, allowed)
 * takes the observation as a list or tuple of numbers and the allowed actions as an int
 * bit set (bit a: action a allowed), and returns the masked arg max of the logits. The
 * work buffers are shared by the kernel's calls: every input is read before they are
 * written, and nothing runs Python code (so lets another thread in) while they are in
 * use. The arithmetic is the numpy path's, step for step:
 *
 *   obs   = (float32) feature                      the observation the policy sees
 *   z     = ((double) obs - mean) / scale           VecNormalize, in float64
 *   z     = max(min(z, clip), -clip)                numpy's order; NaN stays NaN
 *   x     = (double) (float32) z                    VecNormalize returns float32
 *   x'    = act(W x + b) per layer, in float64      sums over inputs in index order
 *                                                   tanh as 1 - 2 / (exp(2v) + 1)
 *   action = first index of the largest allowed logit (a NaN logit wins, as in
 *            numpy's argmax); every logit -inf gives 0, as numpy does
 *
 * Two things differ from numpy, both by a few units in the last place of a double: the
 * order of the additions inside a dot product (BLAS blocks its sums), and tanh, computed
 * from exp (within 4e-16 of libm's tanh, absolute; half its time, which was half the
 * kernel's). Both are far below the float32 rounding that separates either path from
 * the torch policy (see allocator.learned).
 *
 * No numpy C API: weights arrive as bytes (the buffer protocol), so the extension builds
 * with the Python headers alone. allocator.learned falls back to numpy when this module
 * was not built.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <string.h>

enum { ACT_IDENTITY = 0, ACT_TANH = 1, ACT_RELU = 2 };
/* Observations up to this width are read into the stack; wider ones into the heap. */
#define MAX_STACK_INPUTS 256
/* The widest layer accepted: 2^13, so that a weight matrix (2^26 doubles) fits any
 * Py_ssize_t, 32-bit ones included. */
#define MAX_WIDTH (1 << 13)

enum { KERNEL_EMPTY = 0, KERNEL_BUILDING = 1, KERNEL_READY = 2 };

typedef struct {
    PyObject_HEAD
    int state;              /* KERNEL_EMPTY, _BUILDING or _READY: built once, never again */
    Py_ssize_t n_layers;
    Py_ssize_t *sizes;      /* n_layers + 1 widths: inputs, hidden..., outputs */
    int *activations;       /* per layer */
    double **weights;       /* per layer: (in, out) row-major, so W[i*out + j] */
    double **biases;        /* per layer: (out,) */
    double *mean;           /* (inputs,) or NULL: no normalisation */
    double *scale;          /* (inputs,) sqrt(var + epsilon) */
    double clip;
    double *buffer_a;       /* two work vectors of the widest layer */
    double *buffer_b;
    Py_ssize_t widest;
} Kernel;

static void
Kernel_free_arrays(Kernel *self)
{
    Py_ssize_t k;
    if (self->weights != NULL) {
        for (k = 0; k < self->n_layers; k++) PyMem_Free(self->weights[k]);
        PyMem_Free(self->weights);
    }
    if (self->biases != NULL) {
        for (k = 0; k < self->n_layers; k++) PyMem_Free(self->biases[k]);
        PyMem_Free(self->biases);
    }
    PyMem_Free(self->sizes);
    PyMem_Free(self->activations);
    PyMem_Free(self->mean);
    PyMem_Free(self->scale);
    PyMem_Free(self->buffer_a);
    PyMem_Free(self->buffer_b);
    self->weights = self->biases = NULL;
    self->sizes = NULL;
    self->activations = NULL;
    self->mean = self->scale = self->buffer_a = self->buffer_b = NULL;
    self->n_layers = 0;
}

static void
Kernel_dealloc(Kernel *self)
{
    Kernel_free_arrays(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* A copy of a bytes-like object of exactly `count` doubles, or NULL with an error set. */
static double *
copy_doubles(PyObject *source, Py_ssize_t count, const char *what)
{
    Py_buffer view;
    double *out;
    if (PyObject_GetBuffer(source, &view, PyBUF_SIMPLE) < 0) return NULL;
    if (view.len != count * (Py_ssize_t)sizeof(double)) {
        PyErr_Format(PyExc_ValueError, "Kernel: %s holds %zd bytes, expected %zd float64",
                     what, view.len, count);
        PyBuffer_Release(&view);
        return NULL;
    }
    out = PyMem_Malloc((size_t)(count > 0 ? count : 1) * sizeof(double));
    if (out == NULL) {
        PyBuffer_Release(&view);
        PyErr_NoMemory();
        return NULL;
    }
    memcpy(out, view.buf, (size_t)count * sizeof(double));
    PyBuffer_Release(&view);
    return out;
}

/* Kernel(sizes, weights, biases, activations, mean, scale, clip), built once
 *   sizes: list of n_layers + 1 ints (each 1 to MAX_WIDTH); weights, biases: lists of
 *   n_layers bytes-like objects (float64, weights as (in, out) row-major); activations: list
 *   of n_layers ints (0 identity, 1 tanh, 2 relu); mean, scale: bytes-like of `inputs`
 *   float64 or None; clip: float. */
static int
Kernel_init(Kernel *self, PyObject *args, PyObject *kwds)
{
    static char *keywords[] = {"sizes", "weights", "biases", "activations", "mean",
                               "scale", "clip", NULL};
    PyObject *sizes, *weights, *biases, *activations, *mean, *scale;
    double clip;
    Py_ssize_t n, k;

    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOOd", keywords, &sizes, &weights,
                                     &biases, &activations, &mean, &scale, &clip))
        return -1;
    /* Built once: a decision in progress (its features' __float__ may run Python code)
     * must never see its arrays freed or resized under it. */
    if (self->state != KERNEL_EMPTY) {
        PyErr_SetString(PyExc_RuntimeError, "Kernel: already built; make a new Kernel");
        return -1;
    }
    if (!PyList_Check(sizes) || !PyList_Check(weights) || !PyList_Check(biases)
        || !PyList_Check(activations)) {
        PyErr_SetString(PyExc_TypeError, "Kernel: sizes, weights, biases and activations "
                                         "must be lists");
        return -1;
    }
    n = PyList_GET_SIZE(weights);
    if (n < 1 || PyList_GET_SIZE(sizes) != n + 1 || PyList_GET_SIZE(biases) != n
        || PyList_GET_SIZE(activations) != n) {
        PyErr_SetString(PyExc_ValueError, "Kernel: expected n_layers >= 1 weights, biases "
                                          "and activations, and n_layers + 1 sizes");
        return -1;
    }
    self->state = KERNEL_BUILDING;
    self->sizes = PyMem_Calloc((size_t)(n + 1), sizeof(Py_ssize_t));
    self->activations = PyMem_Calloc((size_t)n, sizeof(int));
    self->weights = PyMem_Calloc((size_t)n, sizeof(double *));
    self->biases = PyMem_Calloc((size_t)n, sizeof(double *));
    if (!self->sizes || !self->activations || !self->weights || !self->biases) {
        PyErr_NoMemory();
        goto fail;
    }
    self->n_layers = n;
    self->widest = 0;
    for (k = 0; k <= n; k++) {
        PyObject *item = PyList_GetItem(sizes, k);  /* borrowed; the list is ours */
        Py_ssize_t size;
        if (item == NULL) goto fail;
        Py_INCREF(item);
        size = PyNumber_AsSsize_t(item, PyExc_OverflowError);
        Py_DECREF(item);
        if (size == -1 && PyErr_Occurred()) goto fail;
        if (size < 1 || size > MAX_WIDTH) {
            PyErr_Format(PyExc_ValueError, "Kernel: layer width %zd out of range", size);
            goto fail;
        }
        self->sizes[k] = size;
        if (size > self->widest) self->widest = size;
    }
    for (k = 0; k < n; k++) {
        PyObject *item = PyList_GetItem(activations, k);
        long code;
        if (item == NULL) goto fail;
        Py_INCREF(item);
        code = PyLong_AsLong(item);
        Py_DECREF(item);
        if (code == -1 && PyErr_Occurred()) goto fail;
        if (code != ACT_IDENTITY && code != ACT_TANH && code != ACT_RELU) {
            PyErr_Format(PyExc_ValueError, "Kernel: unknown activation code %ld", code);
            goto fail;
        }
        self->activations[k] = (int)code;
        item = PyList_GetItem(weights, k);
        if (item == NULL) goto fail;
        Py_INCREF(item);
        self->weights[k] = copy_doubles(item, self->sizes[k] * self->sizes[k + 1], "a weight");
        Py_DECREF(item);
        if (self->weights[k] == NULL) goto fail;
        item = PyList_GetItem(biases, k);
        if (item == NULL) goto fail;
        Py_INCREF(item);
        self->biases[k] = copy_doubles(item, self->sizes[k + 1], "a bias");
        Py_DECREF(item);
        if (self->biases[k] == NULL) goto fail;
    }
    if ((mean == Py_None) != (scale == Py_None)) {
        PyErr_SetString(PyExc_ValueError, "Kernel: mean and scale must both be given or "
                                          "both be None");
        goto fail;
    }
    if (mean != Py_None) {
        self->mean = copy_doubles(mean, self->sizes[0], "mean");
        if (self->mean == NULL) goto fail;
        self->scale = copy_doubles(scale, self->sizes[0], "scale");
        if (self->scale == NULL) goto fail;
    }
    self->clip = clip;
    self->buffer_a = PyMem_Malloc((size_t)self->widest * sizeof(double));
    self->buffer_b = PyMem_Malloc((size_t)self->widest * sizeof(double));
    if (!self->buffer_a || !self->buffer_b) {
        PyErr_NoMemory();
        goto fail;
    }
    self->state = KERNEL_READY;
    return 0;
fail:
    Kernel_free_arrays(self);
    self->state = KERNEL_EMPTY;
    return -1;
}

/* The logits of one observation into a work buffer (returned); NULL with an error set. */
static double *
Kernel_forward(Kernel *self, PyObject *features)
{
    PyObject *fast;
    Py_ssize_t i, j, k, n_in;
    double stack[MAX_STACK_INPUTS];
    double *heap = NULL, *raw, *x, *y, *swap;

    if (self->state != KERNEL_READY) {
        PyErr_SetString(PyExc_RuntimeError, "Kernel: not built");
        return NULL;
    }
    if (!PyList_Check(features) && !PyTuple_Check(features)) {
        PyErr_SetString(PyExc_TypeError, "Kernel: features must be a list or tuple of "
                                         "numbers");
        return NULL;
    }
    fast = PySequence_Fast(features, "");  /* the list or tuple itself, a new reference */
    if (fast == NULL) return NULL;
    n_in = self->sizes[0];
    if (PySequence_Fast_GET_SIZE(fast) != n_in) {
        PyErr_Format(PyExc_ValueError, "Kernel: expected %zd features, got %zd", n_in,
                     PySequence_Fast_GET_SIZE(fast));
        Py_DECREF(fast);
        return NULL;
    }
    /* Read every number before touching the shared work buffers: converting an object
     * that is not a float may run Python code (its __float__), and with it another
     * decision on this kernel (another thread's, or a re-entrant one). Releasing `fast`
     * frees nothing (it is the caller's list or tuple), and nothing after the loop runs
     * Python code. */
    if (n_in > MAX_STACK_INPUTS) {
        heap = PyMem_Malloc((size_t)n_in * sizeof(double));
        if (heap == NULL) {
            Py_DECREF(fast);
            PyErr_NoMemory();
            return NULL;
        }
    }
    raw = heap != NULL ? heap : stack;
    for (i = 0; i < n_in; i++) {
        PyObject *item;
        /* re-read each time: a __float__ may have changed the caller's list */
        if (PySequence_Fast_GET_SIZE(fast) != n_in) {
            PyErr_SetString(PyExc_RuntimeError, "Kernel: the features changed while read");
            Py_DECREF(fast);
            PyMem_Free(heap);
            return NULL;
        }
        item = PySequence_Fast_GET_ITEM(fast, i);
        if (PyFloat_Check(item)) {
            raw[i] = PyFloat_AS_DOUBLE(item);
            continue;
        }
        if (PyUnicode_Check(item) || PyBytes_Check(item) || PyByteArray_Check(item)) {
            PyErr_SetString(PyExc_TypeError, "Kernel: a feature is text, not a number");
            Py_DECREF(fast);
            PyMem_Free(heap);
            return NULL;
        }
        /* the item may be dropped from the caller's list by the code __float__ runs */
        Py_INCREF(item);
        raw[i] = PyFloat_AsDouble(item);
        Py_DECREF(item);
        if (raw[i] == -1.0 && PyErr_Occurred()) {
            Py_DECREF(fast);
            PyMem_Free(heap);
            return NULL;
        }
    }
    Py_DECREF(fast);
    x = self->buffer_a;
    for (i = 0; i < n_in; i++) {
        double value = (double)(float)raw[i];
        if (self->mean != NULL) {
            value = (value - self->mean[i]) / self->scale[i];
            value = value < self->clip ? value : (isnan(value) ? value : self->clip);
            value = value > -self->clip ? value : (isnan(value) ? value : -self->clip);
            value = (double)(float)value;
        }
        x[i] = value;
    }
    PyMem_Free(heap);

    y = self->buffer_b;
    for (k = 0; k < self->n_layers; k++) {
        const Py_ssize_t n_rows = self->sizes[k], n_out = self->sizes[k + 1];
        const double *w = self->weights[k], *b = self->biases[k];
        for (j = 0; j < n_out; j++) y[j] = 0.0;
        /* y += x_i * W[i, :], input by input: each output sums its terms in index order,
         * and the inner loop over outputs vectorises. */
        for (i = 0; i < n_rows; i++) {
            const double xi = x[i];
            const double *row = w + i * n_out;
            for (j = 0; j < n_out; j++) y[j] += xi * row[j];
        }
        switch (self->activations[k]) {
        case ACT_TANH:
            for (j = 0; j < n_out; j++) {
                /* exp overflows to inf for large v (then 1), underflows to 0 (then -1);
                 * NaN stays NaN */
                const double e = exp(2.0 * (y[j] + b[j]));
                y[j] = 1.0 - 2.0 / (e + 1.0);
            }
            break;
        case ACT_RELU:
            /* numpy's maximum(x, 0): NaN stays NaN */
            for (j = 0; j < n_out; j++) {
                const double v = y[j] + b[j];
                y[j] = (v < 0.0) ? 0.0 : v;
            }
            break;
        default:
            for (j = 0; j < n_out; j++) y[j] += b[j];
        }
        swap = x;
        x = y;
        y = swap;
    }
    return x;
}

static PyObject *
Kernel_act(Kernel *self, PyObject *args)
{
    PyObject *features, *allowed_obj;
    unsigned long long allowed;
    const double *logits;
    Py_ssize_t a, n_out, best_index = 0;
    double best = -INFINITY;
    PyObject *index;

    if (!PyArg_ParseTuple(args, "OO:act", &features, &allowed_obj)) return NULL;
    if (self->state != KERNEL_READY) {
        PyErr_SetString(PyExc_RuntimeError, "Kernel: not built");
        return NULL;
    }
    n_out = self->sizes[self->n_layers];
    if (n_out > 64) {
        PyErr_SetString(PyExc_ValueError, "Kernel.act: more than 64 actions");
        return NULL;
    }
    index = PyNumber_Index(allowed_obj);  /* ints and numpy integers, not floats */
    if (index == NULL) return NULL;
    {
        int overflow = 0;
        const long long value = PyLong_AsLongLongAndOverflow(index, &overflow);
        if (value == -1 && PyErr_Occurred()) {
            Py_DECREF(index);
            return NULL;
        }
        if (overflow < 0 || (overflow == 0 && value < 0)) {
            Py_DECREF(index);
            PyErr_SetString(PyExc_ValueError, "Kernel.act: allowed must be >= 0 (a bit set)");
            return NULL;
        }
        if (overflow > 0) {  /* 2^63 or more: bit 63 is an action only with 64 actions */
            allowed = PyLong_AsUnsignedLongLong(index);
            if (allowed == (unsigned long long)-1 && PyErr_Occurred()) {
                PyErr_Clear();
                Py_DECREF(index);
                PyErr_SetString(PyExc_ValueError, "Kernel.act: allowed has bits beyond the "
                                                  "actions");
                return NULL;
            }
        } else {
            allowed = (unsigned long long)value;
        }
    }
    Py_DECREF(index);
    if (n_out < 64 && (allowed >> n_out) != 0) {
        PyErr_Format(PyExc_ValueError, "Kernel.act: allowed has bits beyond the %zd actions",
                     n_out);
        return NULL;
    }
    logits = Kernel_forward(self, features);
    if (logits == NULL) return NULL;
    for (a = 0; a < n_out; a++) {
        double value;
        if (!((allowed >> a) & 1ULL)) continue;
        value = logits[a];
        if (isnan(value)) {
            /* numpy's argmax returns the first NaN; disallowed entries are -inf there */
            best_index = a;
            break;
        }
        if (value > best) {
            best = value;
            best_index = a;
        }
    }
    return PyLong_FromSsize_t(best_index);
}

static PyObject *
Kernel_logits(Kernel *self, PyObject *features)
{
    const double *logits = Kernel_forward(self, features);
    PyObject *out;
    Py_ssize_t a, n_out;
    double *copy;
    if (logits == NULL) return NULL;
    /* Copied before any allocation: creating the list may run the garbage collector,
     * whose finalizers may decide on this kernel and overwrite its work buffers. */
    n_out = self->sizes[self->n_layers];
    copy = PyMem_Malloc((size_t)n_out * sizeof(double));
    if (copy == NULL) return PyErr_NoMemory();
    memcpy(copy, logits, (size_t)n_out * sizeof(double));
    out = PyList_New(n_out);
    if (out == NULL) {
        PyMem_Free(copy);
        return NULL;
    }
    for (a = 0; a < n_out; a++) {
        PyObject *value = PyFloat_FromDouble(copy[a]);
        if (value == NULL) {
            PyMem_Free(copy);
            Py_DECREF(out);
            return NULL;
        }
        PyList_SET_ITEM(out, a, value);
    }
    PyMem_Free(copy);
    return out;
}

static PyMethodDef Kernel_methods[] = {
    {"act", (PyCFunction)Kernel_act, METH_VARARGS,
     "act(features, allowed) -> int: the masked arg max of the logits; allowed is an int "
     "bit set (bit a set: action a allowed)."},
    {"logits", (PyCFunction)Kernel_logits, METH_O,
     "logits(features) -> list[float]: the unmasked logits, float64."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject KernelType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "allocator._mlpkernel.Kernel",
    .tp_doc = "A dense MLP's forward pass and masked arg max on one observation.",
    .tp_basicsize = sizeof(Kernel),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Kernel_init,
    .tp_dealloc = (destructor)Kernel_dealloc,
    .tp_methods = Kernel_methods,
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "allocator._mlpkernel",
    .m_doc = "The learned allocator's compiled single-state forward pass.",
    .m_size = -1,
};

PyMODINIT_FUNC
PyInit__mlpkernel(void)
{
    PyObject *m;
    if (PyType_Ready(&KernelType) < 0) return NULL;
    m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    Py_INCREF(&KernelType);
    if (PyModule_AddObject(m, "Kernel", (PyObject *)&KernelType) < 0) {
        Py_DECREF(&KernelType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
