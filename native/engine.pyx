# cython: language_level=3
"""flowchain._engine: FlowChain's native hot path.

One extension module; its parts are the .pxi files included below and call each other
directly in C: the clock (clock.h), native HDR recording (hdr.h), the execution ring and the
chain runner. The public Python API lives in the ``flowchain`` package; this module is private.
"""
import os

import numpy as np
cimport cython
cimport numpy as cnp
from cpython.ref cimport PyObject
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, INT64_MAX

cdef extern from "Python.h":
    # declared on raw pointers: Cython adds no error check, the runner handles NULL itself
    PyObject *PyTuple_GET_ITEM(object tup, Py_ssize_t i)
    PyObject *PyObject_CallOneArg(PyObject *fn, PyObject *arg)
    void PyErr_Fetch(PyObject **etype, PyObject **evalue, PyObject **etb)
    void PyErr_NormalizeException(PyObject **etype, PyObject **evalue, PyObject **etb)
    int PyException_SetTraceback(PyObject *exc, PyObject *tb)
    void Py_XDECREF(PyObject *o)
    void Py_DECREF(PyObject *o)


cdef inline PyObject *fc_call_one(PyObject *fn, PyObject *arg) noexcept:
    return PyObject_CallOneArg(fn, arg)


cdef inline object fc_steal(PyObject *ref):
    """Return ``ref`` (a new reference) as an object, taking over its reference."""
    result = <object>ref
    Py_DECREF(ref)
    return result


cdef object fc_take_exception():
    """Return the pending exception (normalized, with its traceback) and clear it."""
    cdef PyObject *etype = NULL
    cdef PyObject *evalue = NULL
    cdef PyObject *etb = NULL
    PyErr_Fetch(&etype, &evalue, &etb)
    PyErr_NormalizeException(&etype, &evalue, &etb)
    if evalue == NULL:
        Py_XDECREF(etype)
        Py_XDECREF(etb)
        return SystemError("a step returned no result and raised no exception")
    if etb != NULL:
        PyException_SetTraceback(evalue, etb)
    exc = <object>evalue
    Py_XDECREF(etype)
    Py_XDECREF(evalue)
    Py_XDECREF(etb)
    return exc

cnp.import_array()

include "clock.pxi"
include "hdr.pxi"
include "ring.pxi"
include "failures.pxi"
include "runner.pxi"
include "admission.pxi"
include "alloc.pxi"

# The execution status codes of the ring's ``status`` column: defined once (ring.pxi) and
# exported here; every Python module imports them from the engine (flowchain._native).
STATUS_PENDING = ST_EMPTY
STATUS_RUNNING = ST_RUNNING
STATUS_SUCCEEDED = ST_SUCCEEDED
STATUS_FAILED = ST_FAILED
STATUS_NAMES = {ST_EMPTY: "pending", ST_RUNNING: "running",
                ST_SUCCEEDED: "succeeded", ST_FAILED: "failed"}

# Calibrate once at import: ~20 ms of busy-wait. FLOWCHAIN_CLOCK=os forces the OS clock.
calibrate_clock(20_000_000, os.environ.get("FLOWCHAIN_CLOCK", "").lower() != "os")
