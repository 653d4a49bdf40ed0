/* FlowChain's per-thread allocation counter: what tracemalloc told the profiler (bytes a step
 * allocated), for the measured executions only, at the cost of one thread-local test per
 * allocation for every other one.
 *
 * fc_alloc_install() wraps CPython's PYMEM_DOMAIN_MEM and PYMEM_DOMAIN_OBJ allocators
 * (PyMem_Malloc & co., PyObject_Malloc & co.: every Python object, list, dict and str buffer).
 * CPython calls both domains with the GIL held, so the wrappers run one at a time and may be
 * (re)installed by a GIL holder. PYMEM_DOMAIN_RAW is left alone: it is called without the GIL
 * (from any thread, even before the interpreter exists), it serves the interpreter's own
 * bookkeeping rather than a step's objects, and a wrapper installed there could be entered by a
 * thread that CPython has not yet set up. The wrappers are never removed: removing one while
 * another thread is inside it is the very hazard this counter replaces (tracemalloc.stop()).
 *
 * Each wrapper does `if (fc_alloc_tls.depth) fc_alloc_tls.total += size;` and calls the
 * allocator it wrapped. The figure is the *volume requested*, not a net size nor a peak:
 *   malloc(n), calloc(k, n): n, k * n;
 *   realloc(p, n): n, the block's whole new size (CPython does not tell a wrapper the old one;
 *     a buffer grown by realloc over a window counts each size it took: ~9x its final size
 *     for the 1.125x growth of list and bytearray, an upper bound);
 *   free: nothing (a step that allocates and frees 1 MB ten times counts 10 MB).
 * Numpy allocates array data with its own handler (malloc, outside these domains): array
 * *data* is not counted, the array objects (~100 bytes each) are.
 *
 * A window is opened and closed on one thread (fc_alloc_open / fc_alloc_close); windows nest
 * (FC_ALLOC_MAX_DEPTH deep): a window counts every allocation of its thread while it is open,
 * nested windows' included. Other threads' allocations are never counted.
 */
#ifndef FLOWCHAIN_ALLOC_H
#define FLOWCHAIN_ALLOC_H

#include <Python.h>
#include <stdint.h>

#if defined(_MSC_VER)
#  define FC_TLS __declspec(thread)
#  define FC_TLS_HOT __declspec(thread)
#elif defined(__GNUC__) || defined(__clang__)
#  define FC_TLS __thread
/* initial-exec: one %fs-relative load per test, no __tls_get_addr call (16 bytes of the
 * static TLS surplus glibc keeps for dlopen'ed libraries) */
#  define FC_TLS_HOT __thread __attribute__((tls_model("initial-exec")))
#else
#  define FC_TLS _Thread_local
#  define FC_TLS_HOT _Thread_local
#endif

#define FC_ALLOC_MAX_DEPTH 16

typedef struct {
    uint64_t total;   /* bytes counted on this thread while a window was open, ever */
    int depth;        /* windows open on this thread */
} fc_alloc_counter;

static FC_TLS_HOT fc_alloc_counter fc_alloc_tls;
static FC_TLS uint64_t fc_alloc_marks[FC_ALLOC_MAX_DEPTH];

static PyMemAllocatorEx fc_alloc_wrapped_mem;
static PyMemAllocatorEx fc_alloc_wrapped_obj;

static void *fc_alloc_malloc(void *ctx, size_t size)
{
    PyMemAllocatorEx *a = (PyMemAllocatorEx *)ctx;
    if (fc_alloc_tls.depth)
        fc_alloc_tls.total += size;
    return a->malloc(a->ctx, size);
}

static void *fc_alloc_calloc(void *ctx, size_t nelem, size_t elsize)
{
    PyMemAllocatorEx *a = (PyMemAllocatorEx *)ctx;
    if (fc_alloc_tls.depth)
        fc_alloc_tls.total += (uint64_t)nelem * elsize;
    return a->calloc(a->ctx, nelem, elsize);
}

static void *fc_alloc_realloc(void *ctx, void *ptr, size_t new_size)
{
    PyMemAllocatorEx *a = (PyMemAllocatorEx *)ctx;
    if (fc_alloc_tls.depth)
        fc_alloc_tls.total += new_size;
    return a->realloc(a->ctx, ptr, new_size);
}

static void fc_alloc_free(void *ctx, void *ptr)
{
    PyMemAllocatorEx *a = (PyMemAllocatorEx *)ctx;
    a->free(a->ctx, ptr);
}

static void fc_alloc_wrap(PyMemAllocatorDomain domain, PyMemAllocatorEx *wrapped)
{
    PyMemAllocatorEx hook;
    PyMem_GetAllocator(domain, wrapped);
    hook.ctx = wrapped;
    hook.malloc = fc_alloc_malloc;
    hook.calloc = fc_alloc_calloc;
    hook.realloc = fc_alloc_realloc;
    hook.free = fc_alloc_free;
    PyMem_SetAllocator(domain, &hook);
}

/* Whether an allocation of the domain passes through the counter now: 1 when it is the
 * current allocator, else a 1-byte allocation counted in a window of its own tells (the
 * counter may be wrapped by another hook, tracemalloc's, which calls it; or have been dropped
 * by a hook that restored the allocator it saved before the counter's install). */
static int fc_alloc_reached(PyMemAllocatorDomain domain)
{
    PyMemAllocatorEx current;
    uint64_t before = fc_alloc_tls.total;
    void *p;
    int reached;
    PyMem_GetAllocator(domain, &current);
    if (current.malloc == fc_alloc_malloc)
        return 1;
    fc_alloc_tls.depth++;
    p = domain == PYMEM_DOMAIN_MEM ? PyMem_Malloc(1) : PyObject_Malloc(1);
    fc_alloc_tls.depth--;
    reached = fc_alloc_tls.total != before;
    fc_alloc_tls.total = before;  /* the probe is no window's allocation */
    if (domain == PYMEM_DOMAIN_MEM)
        PyMem_Free(p);
    else
        PyObject_Free(p);
    return reached;
}

/* Wrap each domain whose allocations do not pass through the counter; the GIL must be held.
 * Idempotent, and checked at every window's opening, so the counter counts again after a hook
 * installed before it restored what it saved (tracemalloc.stop() of a tracemalloc started
 * before the counter's first install). A saved allocator is replaced only while its wrapper is
 * out of every chain: no call can be inside it then (both domains are called with the GIL). */
static void fc_alloc_install(void)
{
    if (!fc_alloc_reached(PYMEM_DOMAIN_MEM))
        fc_alloc_wrap(PYMEM_DOMAIN_MEM, &fc_alloc_wrapped_mem);
    if (!fc_alloc_reached(PYMEM_DOMAIN_OBJ))
        fc_alloc_wrap(PYMEM_DOMAIN_OBJ, &fc_alloc_wrapped_obj);
}

/* Whether allocations of both domains pass through the counter now (GIL held). */
static int fc_alloc_installed(void)
{
    return fc_alloc_reached(PYMEM_DOMAIN_MEM) && fc_alloc_reached(PYMEM_DOMAIN_OBJ);
}

/* Open a window on this thread: 0, or -1 when FC_ALLOC_MAX_DEPTH are open already. */
static int fc_alloc_open(void)
{
    int d = fc_alloc_tls.depth;
    if (d >= FC_ALLOC_MAX_DEPTH)
        return -1;
    fc_alloc_marks[d] = fc_alloc_tls.total;
    fc_alloc_tls.depth = d + 1;
    return 0;
}

/* Close this thread's innermost window; its bytes in *bytes. 0, or -1 when none is open. */
static int fc_alloc_close(uint64_t *bytes)
{
    int d = fc_alloc_tls.depth;
    if (d <= 0)
        return -1;
    fc_alloc_tls.depth = d - 1;
    *bytes = fc_alloc_tls.total - fc_alloc_marks[d - 1];
    return 0;
}

static int fc_alloc_depth(void)
{
    return fc_alloc_tls.depth;
}

#endif
