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
from cpython.tuple cimport PyTuple_GET_ITEM
from libc.stdint cimport int8_t, int16_t, int32_t, int64_t, INT64_MAX

cnp.import_array()

include "clock.pxi"
include "hdr.pxi"
include "ring.pxi"
include "runner.pxi"
include "admission.pxi"

STATUS_NAMES = {ST_EMPTY: "pending", ST_RUNNING: "running",
                ST_SUCCEEDED: "succeeded", ST_FAILED: "failed"}

# Calibrate once at import: ~20 ms of busy-wait. FLOWCHAIN_CLOCK=os forces the OS clock.
calibrate_clock(20_000_000, os.environ.get("FLOWCHAIN_CLOCK", "").lower() != "os")
