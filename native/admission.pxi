# Tenant admission: a GCRA rate limit, a concurrency limit and a daily quota, checked in C
# before an execution starts; a running execution is never interrupted.

ADMIT_CONCURRENT = 1
ADMIT_RATE = 2
ADMIT_DAILY = 3


@cython.final
cdef class TenantGate:
    """One tenant's admission state, shared by every chain of the tenant.

    The rate limit is the generic cell rate algorithm (a token bucket kept as one theoretical
    arrival time): ``interval_ns`` between executions on average, ``tolerance_ns`` (``(burst -
    1) * interval_ns``) of burst. ``max_running`` bounds the executions in progress and
    ``day_limit`` the executions per period; 0 switches a limit off. Every check runs before
    anything is committed, so a refused execution consumes nothing.

    The Python side supplies three callbacks, none of them on the admitted path:
    ``on_refuse(gate, code, wait_ns)`` returns the exception to raise, ``on_period(gate,
    now_ns)`` starts a new period once ``period_end_ns`` has passed, and
    ``on_reserve(gate)`` raises ``day_reserved`` (persisting the claim) once ``day_used``
    reaches it.
    """

    cdef public int64_t interval_ns
    cdef public int64_t tolerance_ns
    cdef public int64_t tat
    cdef public int64_t max_depth_ns
    cdef public int64_t max_running
    cdef public int64_t running
    cdef public int64_t peak_running
    cdef public int64_t day_limit
    cdef public int64_t day_used
    cdef public int64_t day_reserved
    cdef public int64_t period_end_ns
    cdef public int64_t admitted
    cdef public int64_t refused_concurrent
    cdef public int64_t refused_rate
    cdef public int64_t refused_daily
    cdef public object on_refuse
    cdef public object on_period
    cdef public object on_reserve

    def __cinit__(self):
        self.period_end_ns = INT64_MAX
        self.day_reserved = INT64_MAX

    cdef inline int64_t admit(self) except? -1:
        cdef int64_t now = fc_now_ns()
        cdef int64_t tat, depth = 0
        if now >= self.period_end_ns:
            self.on_period(self, now)
        if self.max_running and self.running >= self.max_running:
            self.refused_concurrent += 1
            raise self.on_refuse(self, ADMIT_CONCURRENT, 0)
        tat = self.tat
        if self.interval_ns:
            if tat < now:
                tat = now
            depth = tat - now
            if depth > self.tolerance_ns:
                self.refused_rate += 1
                raise self.on_refuse(self, ADMIT_RATE, depth - self.tolerance_ns)
            self.tat = tat + self.interval_ns
            depth += self.interval_ns
            if depth > self.max_depth_ns:
                self.max_depth_ns = depth
        if self.day_limit and self.day_used >= self.day_limit:
            self.tat = tat  # give the rate token back
            self.refused_daily += 1
            raise self.on_refuse(self, ADMIT_DAILY, self.period_end_ns - now)
        self.day_used += 1
        if self.day_used > self.day_reserved:
            self.on_reserve(self)
        self.running += 1
        if self.running > self.peak_running:
            self.peak_running = self.running
        self.admitted += 1
        return now

    def try_admit(self):
        """Admit one execution (it must be ended with :meth:`release`), or raise the refusal.

        Returns the engine time of the admission (ns).
        """
        return self.admit()

    def release(self):
        """End an execution admitted with :meth:`try_admit`."""
        if self.running > 0:
            self.running -= 1


@cython.final
cdef class UserMeter:
    """One HDR histogram in the engine's layout, a column of a shared counts block.

    ``block`` is a zeroed C-contiguous int64 array of shape ``(counts_len, meters)`` (from an
    anonymous memory map: pages never written cost no resident memory) and this meter owns
    column ``column``. Meters side by side share pages for the buckets they have in common, so
    ten meters of similar latencies touch one page, not ten. ``snapshot()`` returns the
    counts row and (total, min, max, overflow), as a row of :class:`HdrCounts` does.
    """

    cdef fc_hdr_layout layout
    cdef readonly object block
    cdef readonly Py_ssize_t column
    cdef int64_t *counts_ptr
    cdef Py_ssize_t stride
    cdef int64_t _stats[8]

    def __cinit__(self, object block, Py_ssize_t column, dict layout):
        cdef int64_t[:, ::1] view = block
        self.layout.unit_magnitude = layout["unit_magnitude"]
        self.layout.sub_bucket_half_count_magnitude = layout["sub_bucket_half_count_magnitude"]
        self.layout.sub_bucket_half_count = layout["sub_bucket_half_count"]
        self.layout.sub_bucket_mask = layout["sub_bucket_mask"]
        self.layout.counts_len = layout["counts_len"]
        self.layout.highest = layout["highest_trackable_value"]
        if FC_HDR_STATS > 8:
            raise ValueError("the engine's HDR stats do not fit a UserMeter")
        if view.shape[0] != self.layout.counts_len or not 0 <= column < view.shape[1]:
            raise ValueError(f"a meter needs a block of {self.layout.counts_len} rows and a "
                             f"column inside it; got shape ({view.shape[0]}, {view.shape[1]}) "
                             f"and column {column}")
        self.block = block
        self.column = column
        self.stride = view.shape[1]
        self.counts_ptr = &view[0, column]
        self._stats[FC_HDR_TOTAL] = 0
        self._stats[FC_HDR_MIN] = INT64_MAX
        self._stats[FC_HDR_MAX] = 0
        self._stats[FC_HDR_OVERFLOW] = 0

    cdef inline void record_c(self, int64_t value) noexcept:
        if value < 0:
            value = 0
        if value > self.layout.highest:
            value = self.layout.highest
            self._stats[FC_HDR_OVERFLOW] += 1
        self.counts_ptr[fc_hdr_index(&self.layout, value) * self.stride] += 1
        self._stats[FC_HDR_TOTAL] += 1
        if value < self._stats[FC_HDR_MIN]:
            self._stats[FC_HDR_MIN] = value
        if value > self._stats[FC_HDR_MAX]:
            self._stats[FC_HDR_MAX] = value

    def record(self, int64_t value):
        """Record ``value`` (ns; values above the highest are clamped and counted)."""
        self.record_c(value)

    def snapshot(self, Py_ssize_t h=0):
        """Return a copy of the counts and (total, min, max, overflow)."""
        return (np.array(self.block[:, self.column], dtype=np.int64, copy=True),
                (self._stats[FC_HDR_TOTAL], self._stats[FC_HDR_MIN], self._stats[FC_HDR_MAX],
                 self._stats[FC_HDR_OVERFLOW]))


@cython.final
cdef class AdmittedCall:
    """An execution path behind a :class:`TenantGate`: admit, call, release, meter.

    ``call(data, context)`` (and ``call_async`` for :meth:`run_async`) is the chain's runner
    (``ChainRunner.run``) or a worker process's proxy; ``context`` labels every record. The
    admitted wall time of every successful execution is recorded into ``meter`` (one HDR row,
    the engine's layout, a column of ``meter_block``): the exact per-user histogram, whatever the
    isolation level;
    ``executions`` and ``failures`` count what was admitted and what raised.
    """

    cdef readonly TenantGate gate
    cdef readonly object call
    cdef readonly object call_async
    cdef readonly object context
    cdef readonly UserMeter meter
    cdef readonly int64_t executions
    cdef readonly int64_t failures
    cdef readonly object call_measured
    cdef readonly int64_t sample_every
    cdef readonly int64_t sampled
    cdef int64_t _to_sample

    def __cinit__(self, TenantGate gate, object call, object call_async, object context,
                  dict hdr_layout, object meter_block, Py_ssize_t meter_column):
        self.gate = gate
        self.call = call
        self.call_async = call_async
        self.context = context
        self.meter = UserMeter(meter_block, meter_column, hdr_layout)

    def sample(self, object call_measured, int64_t every):
        """Run 1 execution in ``every`` through ``call_measured(data, context)`` (the
        measuring path: same runner, records and histograms); ``every`` 0 (or no call) turns
        sampling off. The first sampled execution is the ``every``-th from now."""
        if every < 0:
            raise ValueError(f"sample every must be >= 0 (0: off), got {every}")
        if call_measured is None:
            every = 0
        self.call_measured = call_measured
        self.sample_every = every
        self._to_sample = every

    def run(self, object data):
        """Admit and run one execution; return its output or raise its refusal or failure."""
        cdef TenantGate gate = self.gate
        cdef int64_t t0 = gate.admit()
        self.executions += 1
        try:
            if self.sample_every == 0:
                out = self.call(data, self.context)
            else:
                self._to_sample -= 1
                if self._to_sample > 0:
                    out = self.call(data, self.context)
                else:
                    self._to_sample = self.sample_every
                    self.sampled += 1
                    out = self.call_measured(data, self.context)
        except BaseException:
            gate.running -= 1
            self.failures += 1
            raise
        gate.running -= 1
        self.meter.record_c(fc_now_ns() - t0)
        return out

    async def run_async(self, object data):
        """Admit and run one execution, awaiting coroutine steps."""
        cdef TenantGate gate = self.gate
        cdef int64_t t0 = gate.admit()
        self.executions += 1
        try:
            out = await self.call_async(data, self.context)
        except BaseException:
            gate.running -= 1
            self.failures += 1
            raise
        gate.running -= 1
        self.meter.record_c(fc_now_ns() - t0)
        return out
