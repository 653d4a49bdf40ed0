# Native HDR counts (native/hdr.h): per-histogram count rows in HdrHistogram's bucket layout.

cdef extern from "hdr.h" nogil:
    ctypedef struct fc_hdr_layout:
        int unit_magnitude
        int sub_bucket_half_count_magnitude
        int64_t sub_bucket_half_count
        int64_t sub_bucket_mask
        int64_t counts_len
        int64_t highest
    int FC_HDR_TOTAL
    int FC_HDR_MIN
    int FC_HDR_MAX
    int FC_HDR_OVERFLOW
    int FC_HDR_STATS
    int64_t fc_hdr_index(const fc_hdr_layout *L, int64_t value)
    void fc_hdr_record(const fc_hdr_layout *L, int64_t *counts, int64_t *stats, int64_t value)


@cython.final
cdef class HdrCounts:
    """A set of ``n`` histograms recorded natively in HdrHistogram's counts layout.

    ``layout`` is a mapping with the layout fields of an ``hdrh.histogram.HdrHistogram``
    (``unit_magnitude``, ``sub_bucket_half_count_magnitude``, ``sub_bucket_half_count``,
    ``sub_bucket_mask``, ``counts_len``, ``highest_trackable_value``); the Python layer reads
    them off a real HdrHistogram so both sides share one layout by construction.
    Row ``i`` holds histogram ``i``'s counts; ``stats[i]`` its total, min, max and overflow.
    """

    cdef fc_hdr_layout layout
    cdef readonly object counts
    cdef readonly object stats
    cdef int64_t[:, ::1] _counts
    cdef int64_t[:, ::1] _stats
    cdef readonly Py_ssize_t n
    cdef int64_t *counts_ptr
    cdef int64_t *stats_ptr

    def __cinit__(self, Py_ssize_t n, dict layout):
        if n < 1:
            raise ValueError(f"HdrCounts needs at least one histogram, got n={n}")
        self.n = n
        self.layout.unit_magnitude = layout["unit_magnitude"]
        self.layout.sub_bucket_half_count_magnitude = layout["sub_bucket_half_count_magnitude"]
        self.layout.sub_bucket_half_count = layout["sub_bucket_half_count"]
        self.layout.sub_bucket_mask = layout["sub_bucket_mask"]
        self.layout.counts_len = layout["counts_len"]
        self.layout.highest = layout["highest_trackable_value"]
        self.counts = np.zeros((n, self.layout.counts_len), dtype=np.int64)
        self.stats = np.zeros((n, FC_HDR_STATS), dtype=np.int64)
        self._counts = self.counts
        self._stats = self.stats
        self.counts_ptr = &self._counts[0, 0]
        self.stats_ptr = &self._stats[0, 0]
        self._reset_stats()

    cdef void _reset_stats(self) noexcept:
        cdef Py_ssize_t i
        for i in range(self.n):
            self._stats[i, FC_HDR_TOTAL] = 0
            self._stats[i, FC_HDR_MIN] = INT64_MAX
            self._stats[i, FC_HDR_MAX] = 0
            self._stats[i, FC_HDR_OVERFLOW] = 0

    cdef inline void record_c(self, Py_ssize_t h, int64_t value) noexcept:
        fc_hdr_record(&self.layout, self.counts_ptr + h * self.layout.counts_len,
                      self.stats_ptr + h * FC_HDR_STATS, value)

    def record(self, Py_ssize_t h, int64_t value):
        """Record ``value`` into histogram ``h`` (values above the highest are clamped)."""
        if h < 0 or h >= self.n:
            raise IndexError(f"histogram index {h} is outside 0..{self.n - 1}")
        self.record_c(h, value)

    def index_of(self, int64_t value):
        """Return the counts index ``value`` falls in (the same as HdrHistogram's)."""
        return fc_hdr_index(&self.layout, value)

    def snapshot(self, Py_ssize_t h):
        """Return copies of histogram ``h``'s counts and (total, min, max, overflow)."""
        if h < 0 or h >= self.n:
            raise IndexError(f"histogram index {h} is outside 0..{self.n - 1}")
        return self.counts[h].copy(), tuple(int(v) for v in self.stats[h])

    def value_at_percentile(self, Py_ssize_t h, double percentile):
        """Return the lowest equivalent value at ``percentile`` of histogram ``h``, 0 if empty.

        A cheap native estimate for status and ETA; reports use the hdrhistogram package.
        """
        cdef int64_t total = self._stats[h, FC_HDR_TOTAL]
        cdef int64_t target, seen = 0
        cdef Py_ssize_t i, bucket, sub
        if total == 0:
            return 0
        target = <int64_t>(percentile * total / 100.0 + 0.5)
        if target < 1:
            target = 1
        for i in range(self.layout.counts_len):
            seen += self._counts[h, i]
            if seen >= target:
                bucket = (i >> self.layout.sub_bucket_half_count_magnitude) - 1
                sub = (i & (self.layout.sub_bucket_half_count - 1)) + self.layout.sub_bucket_half_count
                if bucket < 0:
                    sub -= self.layout.sub_bucket_half_count
                    bucket = 0
                return sub << (bucket + self.layout.unit_magnitude)
        return 0

    def reset(self):
        """Zero every histogram."""
        self.counts.fill(0)
        self._reset_stats()
