# The chain runner: calls each step, times it, writes the ring and the HDR counts.

@cython.final
cdef class ChainRunner:
    """Execute one registered chain with every step timed and recorded.

    Built by :class:`flowchain.ChainRegistry`; strategy authors call :meth:`run` (or
    :meth:`run_async` for chains with coroutine steps) once per execution. On success the only
    allocation is what the steps return; on failure ``on_failure(runner, seq, step, exc,
    step_input)`` builds the exception to raise (a ``ChainStepError`` carrying the record).

    A runner executes one synchronous execution at a time: it is not re-entrant and not for
    concurrent use from several threads (build one runner per thread). Async executions of
    the same runner may interleave freely on one event loop.
    """

    cdef readonly str chain_id
    cdef readonly tuple step_names
    cdef readonly tuple steps
    cdef readonly tuple step_is_async
    cdef readonly bint has_async
    cdef readonly Py_ssize_t n_steps
    cdef readonly ExecutionRing ring
    cdef readonly HdrCounts histograms
    cdef readonly object step_errors
    cdef int64_t[::1] _step_errors
    cdef readonly int64_t executions
    cdef readonly int64_t failures
    cdef readonly list contexts
    cdef dict _context_index
    cdef public object on_failure
    cdef bint _busy
    cdef object _fns
    cdef unsigned char *_async

    cdef bytes _async_flags

    def __cinit__(self, str chain_id, tuple step_names, tuple steps, tuple step_is_async,
                  Py_ssize_t capacity, dict hdr_layout, object on_failure):
        cdef Py_ssize_t i
        if len(step_names) != len(steps) or len(steps) != len(step_is_async) or not steps:
            raise ValueError("step_names, steps and step_is_async must be equal, non-empty")
        for i, fn in enumerate(steps):
            if not callable(fn):
                raise TypeError(f"step {step_names[i]!r} is not callable: {fn!r}")
        self.chain_id = chain_id
        self.step_names = step_names
        self.steps = steps
        self._fns = steps
        self.step_is_async = tuple(bool(a) for a in step_is_async)
        self.has_async = any(self.step_is_async)
        self._async_flags = bytes(1 if a else 0 for a in self.step_is_async)
        self._async = self._async_flags
        self.n_steps = len(steps)
        self.ring = ExecutionRing(capacity, self.n_steps)
        # rows 0..n-1: the steps; row n: the whole chain
        self.histograms = HdrCounts(self.n_steps + 1, hdr_layout)
        self.step_errors = np.zeros(self.n_steps, dtype=np.int64)
        self._step_errors = self.step_errors
        self.executions = 0
        self.failures = 0
        self.contexts = [None]
        self._context_index = {}
        self.on_failure = on_failure
        self._busy = 0

    cdef inline int32_t _context_of(self, object context) except -1:
        if context is None:
            return 0
        idx = self._context_index.get(context)
        if idx is None:
            idx = len(self.contexts)
            self.contexts.append(context)
            self._context_index[context] = idx
        return <int32_t>idx

    cdef object _failed(self, int64_t seq, Py_ssize_t slot, Py_ssize_t i, int64_t t_prev,
                        object exc, object step_input):
        cdef int64_t t1 = fc_now_ns()
        cdef ExecutionRing ring = self.ring
        if ring._seq[slot] == seq:
            ring._step_ns[slot, i] = t1 - t_prev
            ring._step[slot] = <int16_t>i
            ring._end[slot] = t1
            ring._status[slot] = ST_FAILED
        self._step_errors[i] += 1
        self.failures += 1
        if self.on_failure is None or not isinstance(exc, Exception):
            return None
        return self.on_failure(self, seq, i, exc, step_input)

    def run(self, object data, object context=None):
        """Run the chain on ``data`` and return the last step's output.

        Raises the exception built by ``on_failure`` (chained to the step's own) when a step
        raises; KeyboardInterrupt and other BaseExceptions are recorded and re-raised as is.
        """
        cdef ExecutionRing ring = self.ring
        cdef HdrCounts hist = self.histograms
        cdef Py_ssize_t i = 0, n = self.n_steps, slot
        cdef int64_t seq, t0, t1, t_prev, d
        cdef int32_t ctx
        cdef object fns = self._fns
        cdef int64_t *step_ns
        if self.has_async:
            raise TypeError(f"chain {self.chain_id} has coroutine steps: await run_async()")
        if self._busy:
            raise RuntimeError(
                f"chain {self.chain_id} is already executing on this runner: a runner is not "
                "re-entrant nor shared between threads; build one runner per thread")
        ctx = self._context_of(context)
        self._busy = 1
        seq = self.executions
        self.executions += 1
        t0 = fc_now_ns()
        slot = ring.begin(seq, ctx, t0)
        step_ns = ring.step_ns_ptr + slot * n
        t_prev = t0
        try:
            while i < n:
                ring.step_ptr[slot] = <int16_t>i
                # on an exception `data` still holds the failing step's input
                data = (<object>PyTuple_GET_ITEM(fns, i))(data)
                t1 = fc_now_ns()
                d = t1 - t_prev
                step_ns[i] = d
                hist.record_c(i, d)
                t_prev = t1
                i += 1
        except BaseException as exc:
            self._busy = 0
            err = self._failed(seq, slot, i, t_prev, exc, data)
            if err is None:
                raise
            raise err from exc
        ring.end_ptr[slot] = t_prev
        ring.step_ptr[slot] = <int16_t>n
        ring.status_ptr[slot] = ST_SUCCEEDED
        hist.record_c(n, t_prev - t0)
        self._busy = 0
        return data

    async def run_async(self, object data, object context=None):
        """Run the chain, awaiting coroutine steps; executions may interleave on one loop."""
        cdef ExecutionRing ring = self.ring
        cdef HdrCounts hist = self.histograms
        cdef Py_ssize_t i = 0, n = self.n_steps, slot
        cdef int64_t seq, t0, t1, t_prev, d
        cdef int32_t ctx = self._context_of(context)
        seq = self.executions
        self.executions += 1
        t0 = fc_now_ns()
        slot = ring.begin(seq, ctx, t0)
        t_prev = t0
        try:
            while i < n:
                if ring._seq[slot] == seq:
                    ring._step[slot] = <int16_t>i
                fn = <object>PyTuple_GET_ITEM(self._fns, i)
                if self._async[i]:
                    data = await fn(data)
                else:
                    data = fn(data)
                t1 = fc_now_ns()
                d = t1 - t_prev
                if ring._seq[slot] == seq:
                    ring._step_ns[slot, i] = d
                hist.record_c(i, d)
                t_prev = t1
                i += 1
        except BaseException as exc:
            err = self._failed(seq, slot, i, t_prev, exc, data)
            if err is None:
                raise
            raise err from exc
        if ring._seq[slot] == seq:
            ring._end[slot] = t_prev
            ring._step[slot] = <int16_t>n
            ring._status[slot] = ST_SUCCEEDED
        hist.record_c(n, t_prev - t0)
        return data

    @property
    def busy(self):
        """True while a synchronous execution is in progress on this runner."""
        return bool(self._busy)
