# The execution ring: preallocated numpy arrays, one slot per execution, overwritten in order.

cdef enum:
    ST_EMPTY = 0
    ST_RUNNING = 1
    ST_SUCCEEDED = 2
    ST_FAILED = 3


@cython.final
cdef class ExecutionRing:
    """Fixed-capacity record of the latest executions of one chain.

    Slot ``seq & (capacity - 1)`` holds execution ``seq``: its start and end (engine ns), status,
    the step it is in (live) or failed at, the index of its user context, and each step's
    duration. Capacity is rounded up to a power of two. The arrays are public, read-only views
    for the cold path (monitor, metrics, dashboard): readers copy, the runner never waits.
    """

    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t n_steps
    cdef int64_t mask
    cdef readonly object seq
    cdef readonly object start_ns
    cdef readonly object end_ns
    cdef readonly object status
    cdef readonly object step
    cdef readonly object context
    cdef readonly object step_ns
    cdef int64_t[::1] _seq
    cdef int64_t[::1] _start
    cdef int64_t[::1] _end
    cdef int8_t[::1] _status
    cdef int16_t[::1] _step
    cdef int32_t[::1] _context
    cdef int64_t[:, ::1] _step_ns
    # raw pointers into the arrays above (kept alive by them) for the runner's hot loop
    cdef int64_t *step_ns_ptr
    cdef int64_t *end_ptr
    cdef int8_t *status_ptr
    cdef int16_t *step_ptr

    def __cinit__(self, Py_ssize_t capacity, Py_ssize_t n_steps):
        if capacity < 1:
            raise ValueError(f"ring capacity must be at least 1, got {capacity}")
        if n_steps < 1 or n_steps > 32767:
            raise ValueError(f"a chain has 1..32767 steps, got {n_steps}")
        cdef Py_ssize_t cap = 1
        while cap < capacity:
            cap <<= 1
        self.capacity = cap
        self.mask = cap - 1
        self.n_steps = n_steps
        self.seq = np.full(cap, -1, dtype=np.int64)
        self.start_ns = np.zeros(cap, dtype=np.int64)
        self.end_ns = np.zeros(cap, dtype=np.int64)
        self.status = np.zeros(cap, dtype=np.int8)
        self.step = np.zeros(cap, dtype=np.int16)
        self.context = np.zeros(cap, dtype=np.int32)
        self.step_ns = np.zeros((cap, n_steps), dtype=np.int64)
        self._seq = self.seq
        self._start = self.start_ns
        self._end = self.end_ns
        self._status = self.status
        self._step = self.step
        self._context = self.context
        self._step_ns = self.step_ns
        self.step_ns_ptr = &self._step_ns[0, 0]
        self.end_ptr = &self._end[0]
        self.status_ptr = &self._status[0]
        self.step_ptr = &self._step[0]
        for arr in (self.seq, self.start_ns, self.end_ns, self.status, self.step,
                    self.context, self.step_ns):
            arr.flags.writeable = False

    cdef inline Py_ssize_t begin(self, int64_t seq, int32_t context, int64_t start) noexcept:
        cdef Py_ssize_t slot = seq & self.mask
        self._status[slot] = ST_RUNNING
        self._seq[slot] = seq
        self._context[slot] = context
        self._step[slot] = 0
        self._start[slot] = start
        self._end[slot] = 0
        return slot

    def read(self, int64_t seq):
        """Return execution ``seq`` as a tuple, or None once the ring has overwritten it.

        (seq, start_ns, end_ns, status, step, context_index, step durations as a tuple)
        """
        if seq < 0:
            return None
        cdef Py_ssize_t slot = seq & self.mask
        cdef Py_ssize_t i
        if self._seq[slot] != seq:
            return None
        durations = tuple([self._step_ns[slot, i] for i in range(self.n_steps)])
        return (seq, self._start[slot], self._end[slot], self._status[slot],
                self._step[slot], self._context[slot], durations)

    def running(self):
        """Return the sequence numbers of executions that are running now, oldest first."""
        cdef Py_ssize_t slot
        found = [self._seq[slot] for slot in range(self.capacity)
                 if self._status[slot] == ST_RUNNING]
        found.sort()
        return found
