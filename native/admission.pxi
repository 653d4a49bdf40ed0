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
cdef class AdmittedCall:
    """An execution path behind a :class:`TenantGate`: admit, call, release, meter.

    ``call(data, context)`` (and ``call_async`` for :meth:`run_async`) is the chain's runner
    (``ChainRunner.run``) or a worker process's proxy; ``context`` labels every record. The
    admitted wall time of every successful execution is recorded into ``meter`` (one HDR row,
    the engine's layout): the exact per-user histogram, whatever the isolation level;
    ``executions`` and ``failures`` count what was admitted and what raised.
    """

    cdef readonly TenantGate gate
    cdef readonly object call
    cdef readonly object call_async
    cdef readonly object context
    cdef readonly HdrCounts meter
    cdef readonly int64_t executions
    cdef readonly int64_t failures

    def __cinit__(self, TenantGate gate, object call, object call_async, object context,
                  dict hdr_layout):
        self.gate = gate
        self.call = call
        self.call_async = call_async
        self.context = context
        self.meter = HdrCounts(1, hdr_layout)

    def run(self, object data):
        """Admit and run one execution; return its output or raise its refusal or failure."""
        cdef TenantGate gate = self.gate
        cdef int64_t t0 = gate.admit()
        self.executions += 1
        try:
            out = self.call(data, self.context)
        except BaseException:
            gate.running -= 1
            self.failures += 1
            raise
        gate.running -= 1
        self.meter.record_c(0, fc_now_ns() - t0)
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
        self.meter.record_c(0, fc_now_ns() - t0)
        return out
