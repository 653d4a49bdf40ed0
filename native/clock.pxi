# The nanosecond clock (native/clock.h), exposed to Python for the cold path and tests.

cdef extern from "clock.h" nogil:
    ctypedef struct fc_clock_state:
        int source
        double ns_per_tick
    fc_clock_state fc_clock
    int FC_CLOCK_OS
    int FC_CLOCK_COUNTER
    int64_t fc_now_ns()
    int64_t fc_os_now_ns()
    int fc_counter_available()
    int fc_clock_calibrate(int64_t window_ns, int allow_counter)


def now_ns():
    """Return the engine clock's monotonic time in nanoseconds."""
    return fc_now_ns()


def os_now_ns():
    """Return the operating system's monotonic clock in nanoseconds (the calibration reference)."""
    return fc_os_now_ns()


def calibrate_clock(int64_t window_ns=20_000_000, bint allow_counter=True):
    """Calibrate the hardware counter against the OS monotonic clock.

    Busy-waits for ``window_ns``. With ``allow_counter=False``, or where the CPU has no
    invariant TSC (nor the ARMv8 virtual counter), the engine reads the OS clock instead.
    Returns :func:`clock_info`.
    """
    fc_clock_calibrate(window_ns, 1 if allow_counter else 0)
    return clock_info()


def clock_info():
    """Describe the clock in use: its source and, for a counter, the calibrated ns per tick."""
    return {
        "source": "counter" if fc_clock.source == FC_CLOCK_COUNTER else "os",
        "counter_available": bool(fc_counter_available()),
        "ns_per_tick": fc_clock.ns_per_tick if fc_clock.source == FC_CLOCK_COUNTER else None,
    }
