# The per-thread allocation counter (native/alloc.h), for the measured executions of the
# optimizer's profiling and the tenants' resource sampling.

from libc.stdint cimport uint64_t

cdef extern from "alloc.h":
    int FC_ALLOC_MAX_DEPTH
    void fc_alloc_install()
    int fc_alloc_installed()
    int fc_alloc_open() except -2
    int fc_alloc_close(uint64_t *nbytes)
    int fc_alloc_depth()


def install_alloc_counter():
    """Wrap CPython's object and memory allocators with the counter, for the rest of the
    process (never removed; a no-op once installed). :func:`alloc_window_start` installs it
    too."""
    fc_alloc_install()


def alloc_counter_installed():
    """Return whether the counter wraps both the object and the memory allocators now."""
    return fc_alloc_installed() != 0


def alloc_window_start():
    """Start counting this thread's allocations (object and memory domains: Python objects
    and their buffers; and numpy's array data: the outermost window sets a counting numpy
    memory handler in this thread's current context until it closes) until the matching
    :func:`alloc_window_bytes`. Windows nest, 16 deep; other threads are never counted.

    Raises
    ------
    RuntimeError
        When 16 windows are open on this thread already.
    """
    cdef int opened
    fc_alloc_install()
    opened = fc_alloc_open()  # -2: numpy's handler could not be set (its exception raised)
    if opened != 0:
        raise RuntimeError(f"allocation windows nest at most {FC_ALLOC_MAX_DEPTH} deep on a "
                           f"thread; close one with alloc_window_bytes() first")


def alloc_window_bytes():
    """Stop this thread's innermost window; return the bytes requested while it was open
    (malloc and calloc sizes, realloc's new size; frees are not subtracted). The outermost
    one puts back the numpy memory handler its opening replaced.

    Raises
    ------
    RuntimeError
        When no window is open on this thread.
    """
    cdef uint64_t nbytes = 0
    if fc_alloc_close(&nbytes) != 0:
        raise RuntimeError("no allocation window is open on this thread "
                           "(alloc_window_start() first)")
    return nbytes


def alloc_window_depth():
    """Return how many allocation windows are open on this thread."""
    return fc_alloc_depth()
