# The chain runner: calls each step, times it, writes the ring and the HDR counts.

@cython.final
cdef class RunnerSnapshot:
    """One consistent copy of a runner's counters, taken by :meth:`ChainRunner.snapshot`.

    ``counts``/``stats`` are the success histograms (rows 0..n-1 the steps, row n the chain),
    ``failure_counts``/``failure_stats`` the failure histograms; ``stats[i]`` is (total, min,
    max, overflow). Everything was copied with no thread switch in between, so
    ``failures == failure_stats[n, 0] == step_errors.sum()`` and every total equals its
    counts' sum.
    """

    cdef readonly int64_t executions
    cdef readonly int64_t failures
    cdef readonly object step_errors
    cdef readonly object counts
    cdef readonly object stats
    cdef readonly object failure_counts
    cdef readonly object failure_stats


@cython.final
cdef class ChainRunner:
    """Execute one registered chain with every step timed and recorded.

    Built by :class:`flowchain.ChainRegistry`; strategy authors call :meth:`run` (or
    :meth:`run_async` for chains with coroutine steps) once per execution. On success the only
    allocation is what the steps return. On failure the runner times the failed step and the
    execution into ``failure_histograms``, stores the exception, the failing step's input and
    the clock readings by reference in ``failed`` (a :class:`FailureRing`), and raises what
    ``on_failure(runner, seq, step, failure_number, step_input)`` builds (a ``ChainStepError``
    that materializes its record only when asked), chained to the step's own exception.

    User contexts are kept in a bounded table of ``contexts_kept`` entries: an equal context
    reuses its entry; a new one, when the table is full, replaces the entries in turn (oldest
    assignment first). ``context_of(index, seq)`` resolves a ring row's context, or None when
    its entry has since been given to another context.

    ``on_failure`` may be an exception class (``ChainStepError``): called with those five
    arguments it is built as cheaply as a tuple. ``resolve_failure`` is for its owner (the
    registry), which sets it to the cold-path function that turns such an error into its
    record.

    A runner executes one synchronous execution at a time: it is not re-entrant and not for
    concurrent use from several threads (build one runner per thread); a second caller is
    refused, never let in. Async executions of the same runner may interleave freely on one
    event loop.
    """

    cdef readonly str chain_id
    cdef readonly tuple step_names
    cdef readonly tuple steps
    cdef readonly tuple step_is_async
    cdef readonly bint has_async
    cdef readonly Py_ssize_t n_steps
    cdef readonly ExecutionRing ring
    cdef readonly FailureRing failed
    cdef readonly HdrCounts histograms
    cdef readonly HdrCounts failure_histograms
    cdef readonly object step_errors
    cdef int64_t[::1] _step_errors
    cdef readonly int64_t executions
    cdef readonly int64_t failures
    cdef readonly Py_ssize_t contexts_kept
    cdef list _contexts
    cdef int64_t[::1] _context_since
    cdef dict _context_index
    cdef Py_ssize_t _contexts_used
    cdef Py_ssize_t _context_hand
    cdef public object on_failure
    cdef public object resolve_failure
    cdef bint _busy
    cdef object _fns
    cdef int64_t _sample_every
    cdef int64_t _sample_countdown
    cdef readonly object sample_probe
    cdef unsigned char *_async

    cdef bytes _async_flags

    def __cinit__(self, str chain_id, tuple step_names, tuple steps, tuple step_is_async,
                  Py_ssize_t capacity, dict hdr_layout, object on_failure,
                  Py_ssize_t failures_kept=1024, Py_ssize_t contexts_kept=1024):
        cdef Py_ssize_t i
        if len(step_names) != len(steps) or len(steps) != len(step_is_async) or not steps:
            raise ValueError("step_names, steps and step_is_async must be equal, non-empty")
        for i, fn in enumerate(steps):
            if not callable(fn):
                raise TypeError(f"step {step_names[i]!r} is not callable: {fn!r}")
        if contexts_kept < 2 or contexts_kept > (1 << 24):
            raise ValueError(f"contexts_kept must be within 2..{1 << 24} (entry 0 is 'no "
                             f"context'), got {contexts_kept}")
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
        self.failed = FailureRing(failures_kept, self.n_steps)
        # rows 0..n-1: the steps; row n: the whole chain
        self.histograms = HdrCounts(self.n_steps + 1, hdr_layout)
        self.failure_histograms = HdrCounts(self.n_steps + 1, hdr_layout)
        self.step_errors = np.zeros(self.n_steps, dtype=np.int64)
        self._step_errors = self.step_errors
        self.step_errors.flags.writeable = False
        self.executions = 0
        self.failures = 0
        self.contexts_kept = contexts_kept
        self._contexts = [None] * contexts_kept
        self._context_since = np.zeros(contexts_kept, dtype=np.int64)
        self._context_index = {}
        self._contexts_used = 0
        self._context_hand = 1
        self.on_failure = on_failure
        self.resolve_failure = None
        self._busy = 0

    cdef int32_t _context_of(self, object context, int64_t seq) except -1:
        """The table index of ``context`` (0 for None), assigning an entry to a new one."""
        if context is None:
            return 0
        found = self._context_index.get(context)
        if found is not None:
            return <int32_t>(<Py_ssize_t>found)
        cdef Py_ssize_t idx
        if self._contexts_used < self.contexts_kept - 1:
            self._contexts_used += 1
            idx = self._contexts_used
        else:
            idx = self._context_hand
            self._context_hand = idx % (self.contexts_kept - 1) + 1
            self._context_index.pop(self._contexts[idx], None)
        self._contexts[idx] = context
        self._context_since[idx] = seq
        self._context_index[context] = idx
        return <int32_t>idx

    def context_of(self, Py_ssize_t index, int64_t seq):
        """Return the user context of execution ``seq`` whose ring row holds ``index``.

        None for no context, or when the entry was given to another context after ``seq``
        started (the table keeps ``contexts_kept - 1`` contexts).

        Raises
        ------
        IndexError
            When ``index`` is outside the table.
        """
        if index < 0 or index >= self.contexts_kept:
            raise IndexError(f"context index {index} is outside 0..{self.contexts_kept - 1}")
        if index == 0 or seq < self._context_since[index]:
            return None
        return self._contexts[index]

    @property
    def contexts(self):
        """The context table as a tuple (entry 0, 'no context', is None)."""
        return tuple(self._contexts)

    cdef object _failed(self, int64_t seq, Py_ssize_t slot, Py_ssize_t i, int64_t t0,
                        int64_t t_prev, object exc, object step_input, object context):
        """Record a failure at step ``i``; return the exception to raise (None: ``exc``)."""
        cdef int64_t t1 = fc_now_ns()
        cdef ExecutionRing ring = self.ring
        cdef int64_t number
        cdef const int64_t *step_ns = NULL
        if ring._seq[slot] == seq:
            ring._step_ns[slot, i] = t1 - t_prev
            ring._step[slot] = <int16_t>i
            ring._end[slot] = t1
            ring._status[slot] = ST_FAILED
            step_ns = ring.step_ns_ptr + slot * self.n_steps
        # else an interleaved async execution overwrote the slot: the earlier steps' durations
        # are gone, the failed step's is still known
        self._step_errors[i] += 1
        self.failures += 1
        self.failure_histograms.record_c(i, t1 - t_prev)
        self.failure_histograms.record_c(self.n_steps, t1 - t0)
        number = self.failed.write(seq, i, t0, t1, step_ns, t1 - t_prev, exc, step_input,
                                   context)
        if self.on_failure is None or not isinstance(exc, Exception):
            return None
        return self.on_failure(self, seq, i, number, step_input)

    def run(self, object data, object context=None):
        """Run the chain on ``data`` and return the last step's output.

        Raises the exception built by ``on_failure`` (chained to the step's own) when a step
        raises; KeyboardInterrupt and other BaseExceptions are recorded and re-raised as is.
        """
        cdef ExecutionRing ring = self.ring
        cdef HdrCounts hist = self.histograms
        cdef Py_ssize_t i = 0, n = self.n_steps, slot
        cdef int64_t seq, t0, t1, t_prev, d
        cdef int32_t ctx = 0
        cdef object fns = self._fns
        cdef int64_t *step_ns
        cdef PyObject *out
        if self.has_async:
            raise TypeError(f"chain {self.chain_id} has coroutine steps: await run_async()")
        if self._sample_every:  # profiling: 1 execution in N takes the measuring path
            self._sample_countdown -= 1
            if self._sample_countdown <= 0:
                self._sample_countdown = self._sample_every
                return self.run_measured(data, context, self.sample_probe)
        # check and set with no Python call in between: two threads can never both pass
        if self._busy:
            raise RuntimeError(
                f"chain {self.chain_id} is already executing on this runner: a runner is not "
                "re-entrant nor shared between threads; build one runner per thread")
        self._busy = 1
        seq = self.executions
        if context is not None:
            try:
                ctx = self._context_of(context, seq)
            except BaseException:
                self._busy = 0
                raise
        self.executions = seq + 1
        t0 = fc_now_ns()
        slot = ring.begin(seq, ctx, t0)
        step_ns = ring.step_ns_ptr + slot * n
        t_prev = t0
        while i < n:
            ring.step_ptr[slot] = <int16_t>i
            # a raw call: a raising step leaves NULL and its exception pending, which the
            # failure path takes as is (no except clause, no traceback entry of our own)
            out = fc_call_one(PyTuple_GET_ITEM(fns, i), <PyObject *>data)
            if out == NULL:
                # `data` still holds the failing step's input
                exc = fc_take_exception()
                try:
                    err = self._failed(seq, slot, i, t0, t_prev, exc, data, context)
                finally:
                    self._busy = 0
                if err is None:
                    raise exc
                raise err from exc
            t1 = fc_now_ns()
            data = fc_steal(out)
            d = t1 - t_prev
            step_ns[i] = d
            hist.record_c(i, d)
            t_prev = t1
            i += 1
        ring.end_ptr[slot] = t_prev
        ring.step_ptr[slot] = <int16_t>n
        ring.status_ptr[slot] = ST_SUCCEEDED
        hist.record_c(n, t_prev - t0)
        self._busy = 0
        return data

    def sample(self, object probe, int64_t every):
        """Route 1 execution in ``every`` of :meth:`run` through :meth:`run_measured` with
        ``probe`` (``every`` 0 or ``probe`` None: none; the next sampled one is the
        ``every``-th from now). Off, :meth:`run` pays one integer test."""
        if every < 0:
            raise ValueError(f"every must be 0 (off) or positive, got {every}")
        if probe is None:
            every = 0
        self.sample_probe = probe
        self._sample_every = every
        self._sample_countdown = every

    def run_measured(self, object data, object context, object probe):
        """Run the chain like :meth:`run`, measuring each step's resources through ``probe``.

        The measuring path of a sampled execution: the same steps, ring, histograms and
        failure path as :meth:`run` (the execution counts like any other), with
        ``m = probe.begin()`` before the first step, ``m.before()`` and
        ``m.after(i, wall_ns)`` around each step and ``m.end(ok)`` at the end (also when a
        step raised). A step's wall time is read inside ``before``/``after``, so the probe's
        own work is not in it, and the execution's total is the sum of its steps. A
        measurement with a true ``wants_input`` is also given each step's input,
        ``m.input(i, data)``, before its ``before()``.
        """
        cdef ExecutionRing ring = self.ring
        cdef HdrCounts hist = self.histograms
        cdef Py_ssize_t i = 0, n = self.n_steps, slot
        cdef int64_t seq, t0, t1, t_start, total = 0, d
        cdef int32_t ctx = 0
        cdef bint ok = 0
        cdef bint wants_input = 0
        if self.has_async:
            raise TypeError(f"chain {self.chain_id} has coroutine steps: await run_async()")
        if self._busy:
            raise RuntimeError(
                f"chain {self.chain_id} is already executing on this runner: a runner is not "
                "re-entrant nor shared between threads; build one runner per thread")
        self._busy = 1
        try:
            seq = self.executions
            if context is not None:
                ctx = self._context_of(context, seq)
            m = probe.begin()
            wants_input = getattr(m, "wants_input", False)
        except BaseException:
            self._busy = 0
            raise
        try:
            self.executions = seq + 1
            t0 = fc_now_ns()
            slot = ring.begin(seq, ctx, t0)
            while i < n:
                ring._step[slot] = <int16_t>i
                if wants_input:
                    m.input(i, data)
                m.before()
                t_start = fc_now_ns()
                try:
                    out = (<object>PyTuple_GET_ITEM(self._fns, i))(data)
                except BaseException as exc:
                    err = self._failed(seq, slot, i, t0, t_start, exc, data, context)
                    if err is None:
                        raise
                    raise err from exc
                t1 = fc_now_ns()
                d = t1 - t_start
                m.after(i, d)
                data = out
                ring._step_ns[slot, i] = d
                hist.record_c(i, d)
                total += d
                i += 1
            ring._end[slot] = t0 + total
            ring._step[slot] = <int16_t>n
            ring._status[slot] = ST_SUCCEEDED
            hist.record_c(n, total)
            ok = 1
        finally:
            self._busy = 0
            m.end(ok)
        return data

    async def run_async(self, object data, object context=None):
        """Run the chain, awaiting coroutine steps; executions may interleave on one loop."""
        cdef ExecutionRing ring = self.ring
        cdef HdrCounts hist = self.histograms
        cdef Py_ssize_t i = 0, n = self.n_steps, slot
        cdef int64_t seq, t0, t1, t_prev, d
        cdef int32_t ctx
        seq = self.executions
        ctx = self._context_of(context, seq)
        self.executions = seq + 1
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
            err = self._failed(seq, slot, i, t0, t_prev, exc, data, context)
            if err is None:
                raise
            raise err from exc
        if ring._seq[slot] == seq:
            ring._end[slot] = t_prev
            ring._step[slot] = <int16_t>n
            ring._status[slot] = ST_SUCCEEDED
        hist.record_c(n, t_prev - t0)
        return data

    def snapshot(self):
        """Return a :class:`RunnerSnapshot`: every counter and histogram, copied consistently."""
        cdef RunnerSnapshot snap = RunnerSnapshot.__new__(RunnerSnapshot)
        cdef HdrCounts ok = self.histograms
        cdef HdrCounts bad = self.failure_histograms
        cdef Py_ssize_t rows = ok.n, L = ok.layout.counts_len
        snap.step_errors = np.empty(self.n_steps, dtype=np.int64)
        snap.counts = np.empty((rows, L), dtype=np.int64)
        snap.stats = np.empty((rows, FC_HDR_STATS), dtype=np.int64)
        snap.failure_counts = np.empty((rows, L), dtype=np.int64)
        snap.failure_stats = np.empty((rows, FC_HDR_STATS), dtype=np.int64)
        cdef int64_t[::1] e = snap.step_errors
        cdef int64_t[:, ::1] c = snap.counts
        cdef int64_t[:, ::1] s = snap.stats
        cdef int64_t[:, ::1] fc = snap.failure_counts
        cdef int64_t[:, ::1] fs = snap.failure_stats
        # no Python call from here on: the copies are of one instant
        snap.executions = self.executions
        snap.failures = self.failures
        memcpy(&e[0], &self._step_errors[0], self.n_steps * sizeof(int64_t))
        memcpy(&c[0, 0], ok.counts_ptr, rows * L * sizeof(int64_t))
        memcpy(&s[0, 0], ok.stats_ptr, rows * FC_HDR_STATS * sizeof(int64_t))
        memcpy(&fc[0, 0], bad.counts_ptr, rows * L * sizeof(int64_t))
        memcpy(&fs[0, 0], bad.stats_ptr, rows * FC_HDR_STATS * sizeof(int64_t))
        return snap

    @property
    def busy(self):
        """True while a synchronous execution is in progress on this runner."""
        return bool(self._busy)
