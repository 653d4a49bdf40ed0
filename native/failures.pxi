# The failure ring: what a failed execution leaves on the tick path, kept by reference.

@cython.final
cdef class FailureRing:
    """Fixed-capacity record of the latest failed executions of one chain.

    Failure number ``k`` (0, 1, 2, ... in the order they happened) lives in slot
    ``k & (capacity - 1)`` until failure ``k + capacity`` overwrites it. A slot holds only what
    the tick path has in hand: the execution's seq, the failing step's index, the clock readings
    (start, failure time, each step's duration so far), and references to the exception, the
    failing step's input and the user context. Nothing is formatted here: tracebacks, reprs and
    records are built on the cold path, when someone asks (``ChainRegistry.failures``).
    Capacity is rounded up to a power of two.
    """

    cdef readonly Py_ssize_t capacity
    cdef readonly Py_ssize_t n_steps
    cdef int64_t mask
    cdef readonly int64_t written
    cdef int64_t[::1] _number
    cdef int64_t[::1] _seq
    cdef int16_t[::1] _step
    cdef int64_t[::1] _start
    cdef int64_t[::1] _end
    cdef int64_t[:, ::1] _step_ns
    cdef list _exc
    cdef list _input
    cdef list _context

    def __cinit__(self, Py_ssize_t capacity, Py_ssize_t n_steps):
        if capacity < 1:
            raise ValueError(f"failure ring capacity must be at least 1, got {capacity}")
        if n_steps < 1 or n_steps > 32767:
            raise ValueError(f"a chain has 1..32767 steps, got {n_steps}")
        cdef Py_ssize_t cap = 1
        while cap < capacity:
            cap <<= 1
        self.capacity = cap
        self.mask = cap - 1
        self.n_steps = n_steps
        self.written = 0
        self._number = np.full(cap, -1, dtype=np.int64)
        self._seq = np.full(cap, -1, dtype=np.int64)
        self._step = np.zeros(cap, dtype=np.int16)
        self._start = np.zeros(cap, dtype=np.int64)
        self._end = np.zeros(cap, dtype=np.int64)
        self._step_ns = np.zeros((cap, n_steps), dtype=np.int64)
        self._exc = [None] * cap
        self._input = [None] * cap
        self._context = [None] * cap

    cdef int64_t write(self, int64_t seq, Py_ssize_t step, int64_t start, int64_t end,
                       const int64_t *step_ns, int64_t failed_ns, object exc,
                       object step_input, object context):
        """Store one failure; return its number. Allocates nothing.

        ``step_ns`` holds the durations of the steps before ``step`` (NULL when unknown: they
        are stored as 0); ``failed_ns`` is the failing step's own.
        """
        cdef int64_t number = self.written
        cdef Py_ssize_t slot = number & self.mask
        cdef Py_ssize_t i
        # The replaced references are released when this function returns, after the slot
        # is complete: a finalizer they run (which may switch threads) never sees half a row.
        cdef object old_exc = self._exc[slot]
        cdef object old_input = self._input[slot]
        cdef object old_context = self._context[slot]
        self._number[slot] = -1
        self._seq[slot] = seq
        self._step[slot] = <int16_t>step
        self._start[slot] = start
        self._end[slot] = end
        for i in range(step):
            self._step_ns[slot, i] = step_ns[i] if step_ns != NULL else 0
        self._step_ns[slot, step] = failed_ns
        for i in range(step + 1, self.n_steps):
            self._step_ns[slot, i] = 0
        self._exc[slot] = exc
        self._input[slot] = step_input
        self._context[slot] = context
        self._number[slot] = number
        self.written = number + 1
        return number

    def read(self, int64_t number):
        """Return failure ``number``, or None once overwritten (or not yet written).

        ``(number, seq, step, start_ns, end_ns, step durations (ndarray), exception, input,
        context)``, copied in one step with the GIL held: never half of one failure and half
        of the next.
        """
        if number < 0 or number >= self.written:
            return None
        cdef Py_ssize_t slot = number & self.mask
        durations = np.empty(self.n_steps, dtype=np.int64)
        cdef int64_t[::1] d = durations
        cdef Py_ssize_t i
        cdef int64_t seq, start, end
        cdef int step
        cdef object exc, step_input, context
        # from here to the return no Python code runs, so no thread can write the slot
        if self._number[slot] != number:
            return None
        seq = self._seq[slot]
        step = self._step[slot]
        start = self._start[slot]
        end = self._end[slot]
        for i in range(self.n_steps):
            d[i] = self._step_ns[slot, i]
        exc = self._exc[slot]
        step_input = self._input[slot]
        context = self._context[slot]
        return (number, seq, step, start, end, durations, exc, step_input, context)

    def oldest(self):
        """Return the number of the oldest failure still held (``written`` when empty)."""
        return max(0, self.written - self.capacity)

    def clear(self):
        """Drop every held reference (exceptions, inputs, contexts); numbering goes on."""
        cdef Py_ssize_t slot
        for slot in range(self.capacity):
            self._number[slot] = -1
            self._exc[slot] = None
            self._input[slot] = None
            self._context[slot] = None
