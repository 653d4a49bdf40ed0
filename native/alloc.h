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
 * Numpy allocates array data with its own handler (malloc, outside these domains): the outermost
 * window of a thread sets a counting handler (numpy's NEP 49 API) in the thread's current
 * context for as long as it is open, which counts the same way and delegates to the handler it
 * found current (fc_alloc_np_* below): array data allocated in the window is counted too.
 *
 * A window is opened and closed on one thread (fc_alloc_open / fc_alloc_close); windows nest
 * (FC_ALLOC_MAX_DEPTH deep): a window counts every allocation of its thread while it is open,
 * nested windows' included. Other threads' allocations are never counted.
 */
#ifndef FLOWCHAIN_ALLOC_H
#define FLOWCHAIN_ALLOC_H

#include <Python.h>
#include <stdint.h>
#include <numpy/arrayobject.h>

#if NPY_FEATURE_VERSION < NPY_1_22_API_VERSION
#  error "the allocation counter needs numpy's memory handler API (NPY_TARGET_VERSION >= 1.22)"
#endif

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

/* Numpy's array data (NEP 49 memory handlers). A handler is a "mem_handler" capsule of a
 * PyDataMem_Handler; numpy allocates a new array's data with the handler current in the calling
 * context (a contextvar), keeps a reference to that capsule in the array and frees the data
 * through it, wherever and whenever the array dies. The counting handler wraps the handler that
 * was current when a thread's outermost window opened: its malloc, calloc and realloc count like
 * the wrappers above (only while a window is open on the calling thread, which may hold no GIL:
 * numpy may allocate with it released) and all four delegate to the wrapped allocator. It is set
 * in the opening thread's current context only, so unmeasured executions and other threads never
 * reach it; the outermost close puts back the handler it replaced. Each counting capsule holds a
 * reference to the capsule it wraps (whose ctx its calls use) and lives as long as the last array
 * allocated through it; the last one made is kept (fc_alloc_np_counting) and reused while the
 * wrapped handler is the same one (numpy's default, in practice): a window's opening then
 * allocates nothing but the contextvar's new value. */
typedef struct {
    PyDataMem_Handler handler;    /* first: the capsule's pointer */
    PyDataMemAllocator wrapped;   /* the wrapped handler's allocator, its ctx included */
    PyObject *wrapped_capsule;    /* owns wrapped.ctx: referenced as long as this lives */
} fc_alloc_np_handler;

static PyObject *fc_alloc_np_counting;  /* the last counting capsule made (GIL) */
static FC_TLS PyObject *fc_alloc_np_restore;  /* the handler the outermost close puts back */

static void *fc_alloc_np_malloc(void *ctx, size_t size)
{
    fc_alloc_np_handler *h = (fc_alloc_np_handler *)ctx;
    if (fc_alloc_tls.depth)
        fc_alloc_tls.total += size;
    return h->wrapped.malloc(h->wrapped.ctx, size);
}

static void *fc_alloc_np_calloc(void *ctx, size_t nelem, size_t elsize)
{
    fc_alloc_np_handler *h = (fc_alloc_np_handler *)ctx;
    if (fc_alloc_tls.depth)
        fc_alloc_tls.total += (uint64_t)nelem * elsize;
    return h->wrapped.calloc(h->wrapped.ctx, nelem, elsize);
}

static void *fc_alloc_np_realloc(void *ctx, void *ptr, size_t new_size)
{
    fc_alloc_np_handler *h = (fc_alloc_np_handler *)ctx;
    if (fc_alloc_tls.depth)
        fc_alloc_tls.total += new_size;
    return h->wrapped.realloc(h->wrapped.ctx, ptr, new_size);
}

static void fc_alloc_np_free(void *ctx, void *ptr, size_t size)
{
    fc_alloc_np_handler *h = (fc_alloc_np_handler *)ctx;
    h->wrapped.free(h->wrapped.ctx, ptr, size);
}

static void fc_alloc_np_capsule_free(PyObject *capsule)
{
    fc_alloc_np_handler *h = (fc_alloc_np_handler *)PyCapsule_GetPointer(capsule, "mem_handler");
    if (h == NULL) {
        PyErr_WriteUnraisable(capsule);
        return;
    }
    Py_XDECREF(h->wrapped_capsule);
    PyMem_RawFree(h);
}

/* A new reference to a counting capsule wrapping the handler capsule `wrapped`, or NULL with
 * an exception set (GIL held). */
static PyObject *fc_alloc_np_counting_for(PyObject *wrapped)
{
    fc_alloc_np_handler *h;
    PyDataMem_Handler *w;
    PyObject *capsule;
    if (fc_alloc_np_counting != NULL) {
        h = (fc_alloc_np_handler *)PyCapsule_GetPointer(fc_alloc_np_counting, "mem_handler");
        if (h != NULL && h->wrapped_capsule == wrapped) {
            Py_INCREF(fc_alloc_np_counting);
            return fc_alloc_np_counting;
        }
        PyErr_Clear();
    }
    w = (PyDataMem_Handler *)PyCapsule_GetPointer(wrapped, "mem_handler");
    if (w == NULL)
        return NULL;
    h = (fc_alloc_np_handler *)PyMem_RawCalloc(1, sizeof(*h));
    if (h == NULL)
        return PyErr_NoMemory();
    PyOS_snprintf(h->handler.name, sizeof(h->handler.name), "flowchain_alloc_counter");
    h->handler.version = 1;
    h->handler.allocator.ctx = h;
    h->handler.allocator.malloc = fc_alloc_np_malloc;
    h->handler.allocator.calloc = fc_alloc_np_calloc;
    h->handler.allocator.realloc = fc_alloc_np_realloc;
    h->handler.allocator.free = fc_alloc_np_free;
    h->wrapped = w->allocator;
    Py_INCREF(wrapped);
    h->wrapped_capsule = wrapped;
    capsule = PyCapsule_New(&h->handler, "mem_handler", fc_alloc_np_capsule_free);
    if (capsule == NULL) {
        Py_DECREF(wrapped);
        PyMem_RawFree(h);
        return NULL;
    }
    Py_INCREF(capsule);
    Py_XSETREF(fc_alloc_np_counting, capsule);
    return capsule;
}

/* Set the counting handler in this thread's current context, unless the current one counts
 * already (a context copied while a window was open): 0, or -1 with an exception set. */
static int fc_alloc_np_enter(void)
{
    PyObject *current, *counting, *previous;
    PyDataMem_Handler *c;
    current = PyDataMem_GetHandler();
    if (current == NULL)
        return -1;
    c = (PyDataMem_Handler *)PyCapsule_GetPointer(current, "mem_handler");
    if (c == NULL || c->allocator.malloc == fc_alloc_np_malloc) {
        Py_DECREF(current);
        return c == NULL ? -1 : 0;
    }
    counting = fc_alloc_np_counting_for(current);
    Py_DECREF(current);
    if (counting == NULL)
        return -1;
    previous = PyDataMem_SetHandler(counting);
    Py_DECREF(counting);
    if (previous == NULL)
        return -1;
    fc_alloc_np_restore = previous;
    return 0;
}

/* Put back the handler the outermost window's opening replaced (its arrays keep theirs). */
static void fc_alloc_np_leave(void)
{
    PyObject *previous = fc_alloc_np_restore, *counting;
    if (previous == NULL)
        return;
    fc_alloc_np_restore = NULL;
    counting = PyDataMem_SetHandler(previous);
    Py_DECREF(previous);
    if (counting == NULL)
        PyErr_WriteUnraisable(NULL);  /* a MemoryError of the contextvar: nothing to undo */
    else
        Py_DECREF(counting);
}

/* Open a window on this thread (GIL held): 0; -1 when FC_ALLOC_MAX_DEPTH are open already;
 * -2 with an exception set when numpy's counting handler could not be set. The handler is set
 * before the window counts: its own allocations are no window's. */
static int fc_alloc_open(void)
{
    int d = fc_alloc_tls.depth;
    if (d >= FC_ALLOC_MAX_DEPTH)
        return -1;
    if (d == 0 && fc_alloc_np_enter() != 0)
        return -2;
    fc_alloc_marks[d] = fc_alloc_tls.total;
    fc_alloc_tls.depth = d + 1;
    return 0;
}

/* Close this thread's innermost window (GIL held); its bytes in *bytes. 0, or -1 when none is
 * open. The outermost one puts numpy's handler back once it has stopped counting. */
static int fc_alloc_close(uint64_t *bytes)
{
    int d = fc_alloc_tls.depth;
    if (d <= 0)
        return -1;
    fc_alloc_tls.depth = d - 1;
    *bytes = fc_alloc_tls.total - fc_alloc_marks[d - 1];
    if (d == 1)
        fc_alloc_np_leave();
    return 0;
}

static int fc_alloc_depth(void)
{
    return fc_alloc_tls.depth;
}

#endif
