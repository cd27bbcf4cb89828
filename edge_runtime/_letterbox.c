/* Native letterbox kernel for edge_runtime.letterbox: OpenCV's fixed-point INTER_LINEAR resize,
 * grey padding and the division by 255, in one pass over the model input.
 *
 * It computes exactly what letterbox.letterbox_into_numpy computes (tests compare the two, and both
 * with cv2.resize): horizontal taps  h = (c0 * wx0 + c1 * wx1) >> 4,
 * vertical taps  v = (((wy0 * h0) >> 16) + ((wy1 * h1) >> 16) + 2) >> 2,  output  (float)v / 255.
 * The tap tables come from Python (letterbox._linear_taps), so the arithmetic lives here and the
 * geometry in one place. Every index and weight is range-checked before any pixel is touched,
 * and the GIL is released while it runs, so the other frame worker keeps going.
 *
 * Built with the limited API (one abi3 wheel for CPython >= 3.11). Optional: when it cannot be
 * built (no C compiler, TAGQA_PURE_PYTHON=1) the runtime uses the numpy implementation.
 */
#ifndef TAGQA_LETTERBOX_KERNEL_ONLY
#define Py_LIMITED_API 0x030B0000
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#else /* the arithmetic alone, for the cross-platform bit-exactness check (deploy/greengrass/check_native_kernel.py) */
#include <stddef.h>
typedef ptrdiff_t Py_ssize_t;
#endif
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__)
/* Runtime dispatch: an AVX2 clone of the vertical pass where the CPU has it (faster: docs/benchmarks.md), SSE2 otherwise. */
#define TAGQA_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define TAGQA_CLONES
#endif

#define COEF_MAX 2048 /* 1 << INTER_RESIZE_COEF_BITS: every weight lies in [0, COEF_MAX] */

typedef struct {
    const uint8_t *image;
    Py_ssize_t src_h, src_w;
    float *out;
    Py_ssize_t dst_h, dst_w, top, left, rh, rw;
    const int32_t *x0, *x1, *wx0, *wx1, *y0, *y1, *wy0, *wy1;
    float pad;
} Plan;

/* One source row through the horizontal taps: three planar int32 rows of rw values. */
static void horizontal_row(const Plan *p, Py_ssize_t y, int32_t *dst) {
    const uint8_t *src = p->image + y * p->src_w * 3;
    int32_t *r = dst, *g = dst + p->rw, *b = dst + 2 * p->rw;
    for (Py_ssize_t j = 0; j < p->rw; j++) {
        const uint8_t *u = src + 3 * (Py_ssize_t)p->x0[j], *v = src + 3 * (Py_ssize_t)p->x1[j];
        int32_t w0 = p->wx0[j], w1 = p->wx1[j];
        r[j] = (u[0] * w0 + v[0] * w1) >> 4;
        g[j] = (u[1] * w0 + v[1] * w1) >> 4;
        b[j] = (u[2] * w0 + v[2] * w1) >> 4;
    }
}

TAGQA_CLONES
static void vertical_row(float *out, const int32_t *a, const int32_t *b, int32_t w0, int32_t w1, Py_ssize_t n) {
    for (Py_ssize_t j = 0; j < n; j++) {
        int32_t v = (((w0 * a[j]) >> 16) + ((w1 * b[j]) >> 16) + 2) >> 2;
        out[j] = (float)v / 255.0f;
    }
}

static void fill(float *out, Py_ssize_t n, float value) {
    for (Py_ssize_t k = 0; k < n; k++) out[k] = value;
}

/* rows: two slots of 3 * rw int32, holding the horizontal pass of the last two source rows used. */
static void run(const Plan *p, int32_t *rows) {
    Py_ssize_t plane = p->dst_h * p->dst_w, slot_row[2] = {-1, -1};
    for (int c = 0; c < 3; c++) {
        float *o = p->out + c * plane;
        fill(o, p->top * p->dst_w, p->pad);
        fill(o + (p->top + p->rh) * p->dst_w, (p->dst_h - p->top - p->rh) * p->dst_w, p->pad);
    }
    for (Py_ssize_t i = 0; i < p->rh; i++) {
        Py_ssize_t ya = p->y0[i], yb = p->y1[i];
        int sa = slot_row[0] == ya ? 0 : slot_row[1] == ya ? 1 : -1;
        if (sa < 0) {
            sa = slot_row[0] == yb ? 1 : 0;
            horizontal_row(p, ya, rows + sa * 3 * p->rw);
            slot_row[sa] = ya;
        }
        int sb = sa;
        if (yb != ya) {
            sb = 1 - sa;
            if (slot_row[sb] != yb) {
                horizontal_row(p, yb, rows + sb * 3 * p->rw);
                slot_row[sb] = yb;
            }
        }
        for (int c = 0; c < 3; c++) {
            float *o = p->out + c * plane + (p->top + i) * p->dst_w;
            fill(o, p->left, p->pad);
            fill(o + p->left + p->rw, p->dst_w - p->left - p->rw, p->pad);
            vertical_row(o + p->left, rows + sa * 3 * p->rw + c * p->rw, rows + sb * 3 * p->rw + c * p->rw,
                         p->wy0[i], p->wy1[i], p->rw);
        }
    }
}

#ifndef TAGQA_LETTERBOX_KERNEL_ONLY
static int taps_ok(const int32_t *index, const int32_t *weight, Py_ssize_t n, Py_ssize_t limit) {
    for (Py_ssize_t k = 0; k < n; k++)
        if (index[k] < 0 || index[k] >= limit || weight[k] < 0 || weight[k] > COEF_MAX) return 0;
    return 1;
}

static int get_int32_vector(PyObject *obj, Py_buffer *view, Py_ssize_t *length, const char *name) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize != 4 || view->format == NULL || strcmp(view->format, "i") != 0) {
        PyErr_Format(PyExc_TypeError, "%s must be a contiguous int32 array (format 'i', got '%s')", name,
                     view->format ? view->format : "?");
        PyBuffer_Release(view);
        return -1;
    }
    *length = view->len / 4;
    return 0;
}

PyDoc_STRVAR(letterbox_doc,
"letterbox_f32(image, tensor, top, left, x0, x1, wx0, wx1, y0, y1, wy0, wy1, pad)\n\n"
"Resize HxWx3 uint8 ``image`` (C-contiguous) with the given taps into rows top..top+len(y0) and\n"
"columns left..left+len(x0) of 1x3xHxW float32 ``tensor`` (C-contiguous, writable), values / 255,\n"
"and set every other element to ``pad``. Raises ValueError/TypeError on any inconsistent input.");

static PyObject *letterbox_f32(PyObject *self, PyObject *args) {
    PyObject *objs[10];
    Py_ssize_t top, left;
    float pad;
    static const char *names[10] = {"image", "tensor", "x0", "x1", "wx0", "wx1", "y0", "y1", "wy0", "wy1"};
    if (!PyArg_ParseTuple(args, "OOnnOOOOOOOOf:letterbox_f32", &objs[0], &objs[1], &top, &left, &objs[2],
                          &objs[3], &objs[4], &objs[5], &objs[6], &objs[7], &objs[8], &objs[9], &pad))
        return NULL;
    Py_buffer views[10];
    Py_ssize_t lengths[10];
    int held = 0;
    PyObject *result = NULL;
    Plan p;
    memset(&p, 0, sizeof p);

    if (PyObject_GetBuffer(objs[0], &views[0], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND) < 0) goto done;
    held = 1;
    if (views[0].ndim != 3 || views[0].shape[2] != 3 || views[0].itemsize != 1 ||
        views[0].format == NULL || strcmp(views[0].format, "B") != 0 || views[0].shape[0] < 1 ||
        views[0].shape[1] < 1) {
        PyErr_SetString(PyExc_ValueError, "image must be a C-contiguous HxWx3 uint8 array");
        goto done;
    }
    if (PyObject_GetBuffer(objs[1], &views[1], PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | PyBUF_ND | PyBUF_WRITABLE) < 0)
        goto done;
    held = 2;
    if (views[1].ndim != 4 || views[1].shape[0] != 1 || views[1].shape[1] != 3 || views[1].itemsize != 4 ||
        views[1].format == NULL || strcmp(views[1].format, "f") != 0) {
        PyErr_SetString(PyExc_ValueError, "tensor must be a C-contiguous, writable 1x3xHxW float32 array");
        goto done;
    }
    for (int k = 2; k < 10; k++) {
        if (get_int32_vector(objs[k], &views[k], &lengths[k], names[k]) < 0) goto done;
        held = k + 1;
    }
    p.image = views[0].buf;
    p.src_h = views[0].shape[0];
    p.src_w = views[0].shape[1];
    p.out = views[1].buf;
    p.dst_h = views[1].shape[2];
    p.dst_w = views[1].shape[3];
    p.top = top;
    p.left = left;
    p.rw = lengths[2];
    p.rh = lengths[6];
    p.pad = pad;
    if (lengths[3] != p.rw || lengths[4] != p.rw || lengths[5] != p.rw || lengths[7] != p.rh ||
        lengths[8] != p.rh || lengths[9] != p.rh || p.rw < 1 || p.rh < 1) {
        PyErr_SetString(PyExc_ValueError, "tap tables must be non-empty, x0/x1/wx0/wx1 and y0/y1/wy0/wy1 of equal length");
        goto done;
    }
    if (top < 0 || left < 0 || top + p.rh > p.dst_h || left + p.rw > p.dst_w) {
        PyErr_Format(PyExc_ValueError, "a %zdx%zd resize at (%zd, %zd) does not fit a %zdx%zd tensor",
                     p.rh, p.rw, top, left, p.dst_h, p.dst_w);
        goto done;
    }
    p.x0 = views[2].buf; p.x1 = views[3].buf; p.wx0 = views[4].buf; p.wx1 = views[5].buf;
    p.y0 = views[6].buf; p.y1 = views[7].buf; p.wy0 = views[8].buf; p.wy1 = views[9].buf;
    if (!taps_ok(p.x0, p.wx0, p.rw, p.src_w) || !taps_ok(p.x1, p.wx1, p.rw, p.src_w) ||
        !taps_ok(p.y0, p.wy0, p.rh, p.src_h) || !taps_ok(p.y1, p.wy1, p.rh, p.src_h)) {
        PyErr_SetString(PyExc_ValueError, "a tap index lies outside the image or a weight outside [0, 2048]");
        goto done;
    }
    int32_t *rows = malloc(sizeof(int32_t) * 6 * (size_t)p.rw);
    if (rows == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS
    run(&p, rows);
    Py_END_ALLOW_THREADS
    free(rows);
    Py_INCREF(Py_None);
    result = Py_None;
done:
    for (int k = 0; k < held; k++) PyBuffer_Release(&views[k]);
    return result;
}

static PyMethodDef methods[] = {
    {"letterbox_f32", letterbox_f32, METH_VARARGS, letterbox_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_letterbox", "Native letterbox kernel (see edge_runtime/letterbox.py).", -1, methods,
};

PyMODINIT_FUNC PyInit__letterbox(void) {
    return PyModule_Create(&module);
}
#endif /* TAGQA_LETTERBOX_KERNEL_ONLY */
