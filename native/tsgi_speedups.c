/*
 * tsgi_worker._speedups: the Python worker's per-request parsing in C, for the interpreters it was built for.
 * The pure-Python code in protocol.py stays the reference and the fallback (a machine without a compiler or
 * Python's headers runs it); both must give the same environ and refuse the same packets.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

/*
 * Keys by their place in the packet: a front server sends the same keys in the same order on every request, so
 * the i-th key is usually the str made for the i-th key last time (compared byte for byte), and is reused
 * with its hash already computed instead of made again. Workers run the parse under the GIL.
 */
#define KEY_SLOTS 64
static PyObject *key_cache[KEY_SLOTS];

static PyObject *key_at(Py_ssize_t i, const unsigned char *s, Py_ssize_t n) {
  if (i < KEY_SLOTS) {
    PyObject *cached = key_cache[i];
    if (cached != NULL && PyUnicode_GET_LENGTH(cached) == n && memcmp(PyUnicode_1BYTE_DATA(cached), s, (size_t)n) == 0) {
      Py_INCREF(cached);
      return cached;
    }
  }
  PyObject *key = PyUnicode_DecodeLatin1((const char *)s, n, NULL);
  if (key != NULL && i < KEY_SLOTS) {
    /* Latin-1 decoding always makes a one-byte-kind str (every code point is below 256): the memcmp above
       compares like with like. */
    Py_INCREF(key);
    Py_XSETREF(key_cache[i], key);
  }
  return key;
}

/*
 * parse_vars(data, end, environ) -> bool
 * Adds the uwsgi vars in data[4:end] to environ (keys and values decoded as latin-1; a repeated key keeps
 * its last value, as dict assignment does). Returns False when the vars do not tile data[4:end] exactly
 * (a length runs past the end): the caller raises BadPacket, as with protocol.parse_vars_py.
 */
static PyObject *parse_vars(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
  (void)self;
  if (nargs != 3 || !PyBytes_CheckExact(args[0]) || !PyDict_Check(args[2])) {
    PyErr_SetString(PyExc_TypeError, "parse_vars(data: bytes, end: int, environ: dict)");
    return NULL;
  }
  Py_ssize_t end = PyLong_AsSsize_t(args[1]);
  if (end == -1 && PyErr_Occurred()) return NULL;
  const unsigned char *p = (const unsigned char *)PyBytes_AS_STRING(args[0]);
  if (end > PyBytes_GET_SIZE(args[0]) || end < 4) Py_RETURN_FALSE;
  PyObject *environ = args[2];
  Py_ssize_t pos = 4;
  Py_ssize_t i = 0;
  while (pos < end) {
    if (pos + 2 > end) Py_RETURN_FALSE;
    Py_ssize_t k = pos + 2;
    Py_ssize_t v = k + (p[pos] | (p[pos + 1] << 8));
    if (v + 2 > end) Py_RETURN_FALSE;
    Py_ssize_t next = v + 2 + (p[v] | (p[v + 1] << 8));
    if (next > end) Py_RETURN_FALSE;
    PyObject *key = key_at(i++, p + k, v - k);
    if (key == NULL) return NULL;
    PyObject *value = PyUnicode_DecodeLatin1((const char *)p + v + 2, next - v - 2, NULL);
    if (value == NULL) {
      Py_DECREF(key);
      return NULL;
    }
    int rc = PyDict_SetItem(environ, key, value);
    Py_DECREF(key);
    Py_DECREF(value);
    if (rc < 0) return NULL;
    pos = next;
  }
  Py_RETURN_TRUE;
}

static PyMethodDef methods[] = {
  {"parse_vars", (PyCFunction)(void (*)(void))parse_vars, METH_FASTCALL, "Adds a packet's uwsgi vars to a dict; False if malformed."},
  {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_speedups", NULL, -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__speedups(void) { return PyModule_Create(&module); }
