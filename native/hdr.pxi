# Native HDR counts (native/hdr.h): per-histogram count rows in HdrHistogram's bucket layout.

from libc.string cimport memcpy, memset

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

LAYOUT_KEYS = ("unit_magnitude", "sub_bucket_half_count_magnitude", "sub_bucket_half_count",
               "sub_bucket_mask", "counts_len", "highest_trackable_value")


cdef int64_t _layout_int(dict layout, str key) except? -1:
    if key not in layout:
        raise ValueError(f"HDR layout is missing {key!r}; a layout has the keys "
                         f"{', '.join(LAYOUT_KEYS)} (read them off an hdrh HdrHistogram)")
    value = layout[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"HDR layout {key!r} must be an int, got {type(value).__name__} "
                        f"{value!r}")
    if value < 0 or value > INT64_MAX:
        raise ValueError(f"HDR layout {key!r} is outside 0..2**63-1: {value}")
    return value


cdef fc_hdr_layout _checked_layout(dict layout) except *:
    """Return the C layout of ``layout`` after checking it is one HdrHistogram would build."""
    cdef fc_hdr_layout L
    cdef int64_t unit = _layout_int(layout, "unit_magnitude")
    cdef int64_t shm = _layout_int(layout, "sub_bucket_half_count_magnitude")
    cdef int64_t half = _layout_int(layout, "sub_bucket_half_count")
    cdef int64_t mask = _layout_int(layout, "sub_bucket_mask")
    cdef int64_t counts_len = _layout_int(layout, "counts_len")
    cdef int64_t highest = _layout_int(layout, "highest_trackable_value")
    cdef int64_t smallest_untrackable, buckets = 1
    if shm > 20 or unit + shm + 1 > 62:
        raise ValueError(f"HDR layout magnitudes out of range: unit_magnitude={unit}, "
                         f"sub_bucket_half_count_magnitude={shm} (their sum must stay below 62)")
    if half != (<int64_t>1) << shm:
        raise ValueError(f"HDR layout sub_bucket_half_count={half} is not "
                         f"2**sub_bucket_half_count_magnitude = {(<int64_t>1) << shm}")
    if mask != (2 * half - 1) << unit:
        raise ValueError(f"HDR layout sub_bucket_mask={mask} is not "
                         f"(2 * sub_bucket_half_count - 1) << unit_magnitude = "
                         f"{(2 * half - 1) << unit}")
    if highest < 2 * ((<int64_t>1) << unit):
        raise ValueError(f"HDR layout highest_trackable_value={highest} is below twice the "
                         f"lowest discernible value {(<int64_t>1) << unit}")
    smallest_untrackable = (2 * half) << unit
    while smallest_untrackable <= highest:
        if smallest_untrackable > INT64_MAX // 2:
            buckets += 1
            break
        smallest_untrackable <<= 1
        buckets += 1
    if counts_len != (buckets + 1) * half:
        raise ValueError(f"HDR layout counts_len={counts_len} does not fit its other fields: "
                         f"values up to {highest} need {(buckets + 1) * half} counts; build the "
                         "layout from a real HdrHistogram (HistogramSettings.layout())")
    L.unit_magnitude = <int>unit
    L.sub_bucket_half_count_magnitude = <int>shm
    L.sub_bucket_half_count = half
    L.sub_bucket_mask = mask
    L.counts_len = counts_len
    L.highest = highest
    if fc_hdr_index(&L, highest) >= counts_len:  # the arithmetic above guarantees this
        raise ValueError(f"HDR layout counts_len={counts_len} cannot hold {highest}")
    return L


@cython.final
cdef class HdrCounts:
    """A set of ``n`` histograms recorded natively in HdrHistogram's counts layout.

    ``layout`` is a mapping with the layout fields of an ``hdrh.histogram.HdrHistogram``
    (``unit_magnitude``, ``sub_bucket_half_count_magnitude``, ``sub_bucket_half_count``,
    ``sub_bucket_mask``, ``counts_len``, ``highest_trackable_value``); the Python layer reads
    them off a real HdrHistogram so both sides share one layout by construction, and a layout
    whose fields disagree (a short ``counts_len``) is refused.
    Row ``i`` holds histogram ``i``'s counts; ``stats[i]`` its total, min, max and overflow.
    ``counts`` and ``stats`` are read-only views; :meth:`snapshot` and :meth:`snapshot_all`
    copy them consistently (the total always equals the sum of the counts copied with it).
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
        self.layout = _checked_layout(layout)
        self.n = n
        self.counts = np.zeros((n, self.layout.counts_len), dtype=np.int64)
        self.stats = np.zeros((n, FC_HDR_STATS), dtype=np.int64)
        self._counts = self.counts
        self._stats = self.stats
        self.counts_ptr = &self._counts[0, 0]
        self.stats_ptr = &self._stats[0, 0]
        self.counts.flags.writeable = False
        self.stats.flags.writeable = False
        self._reset_stats()

    cdef void _reset_stats(self) noexcept:
        cdef Py_ssize_t i
        for i in range(self.n):
            self.stats_ptr[i * FC_HDR_STATS + FC_HDR_TOTAL] = 0
            self.stats_ptr[i * FC_HDR_STATS + FC_HDR_MIN] = INT64_MAX
            self.stats_ptr[i * FC_HDR_STATS + FC_HDR_MAX] = 0
            self.stats_ptr[i * FC_HDR_STATS + FC_HDR_OVERFLOW] = 0

    cdef inline void record_c(self, Py_ssize_t h, int64_t value) noexcept:
        fc_hdr_record(&self.layout, self.counts_ptr + h * self.layout.counts_len,
                      self.stats_ptr + h * FC_HDR_STATS, value)

    cdef int _check_row(self, Py_ssize_t h) except -1:
        if h < 0 or h >= self.n:
            raise IndexError(f"histogram index {h} is outside 0..{self.n - 1}")
        return 0

    def record(self, Py_ssize_t h, int64_t value):
        """Record ``value`` into histogram ``h`` (values above the highest are clamped)."""
        self._check_row(h)
        self.record_c(h, value)

    def index_of(self, int64_t value):
        """Return the counts index ``value`` falls in (the same as HdrHistogram's)."""
        if value < 0 or value > self.layout.highest:
            raise ValueError(f"value {value} is outside 0..{self.layout.highest}")
        return fc_hdr_index(&self.layout, value)

    def snapshot(self, Py_ssize_t h):
        """Return copies of histogram ``h``'s counts and (total, min, max, overflow).

        Both are copied in one step with the GIL held, so the total equals the counts' sum
        even while another thread records.
        """
        self._check_row(h)
        cdef Py_ssize_t L = self.layout.counts_len
        out = np.empty(L, dtype=np.int64)
        cdef int64_t[::1] o = out
        cdef int64_t st[4]
        # no Python call from here to the end of the copies: nothing can switch threads
        memcpy(&o[0], self.counts_ptr + h * L, L * sizeof(int64_t))
        memcpy(st, self.stats_ptr + h * FC_HDR_STATS, FC_HDR_STATS * sizeof(int64_t))
        return out, (st[0], st[1], st[2], st[3])

    def snapshot_all(self):
        """Return consistent copies of every row: ``(counts (n, counts_len), stats (n, 4))``."""
        cdef Py_ssize_t L = self.layout.counts_len
        counts = np.empty((self.n, L), dtype=np.int64)
        stats = np.empty((self.n, FC_HDR_STATS), dtype=np.int64)
        cdef int64_t[:, ::1] c = counts
        cdef int64_t[:, ::1] s = stats
        memcpy(&c[0, 0], self.counts_ptr, self.n * L * sizeof(int64_t))
        memcpy(&s[0, 0], self.stats_ptr, self.n * FC_HDR_STATS * sizeof(int64_t))
        return counts, stats

    def value_at_percentile(self, Py_ssize_t h, double percentile):
        """Return the lowest equivalent value at ``percentile`` of histogram ``h``, 0 if empty.

        A cheap native estimate for status and ETA; reports use the hdrhistogram package.

        Raises
        ------
        IndexError
            When ``h`` is not a histogram of this set.
        ValueError
            When ``percentile`` is outside 0..100.
        """
        self._check_row(h)
        if not (0.0 <= percentile <= 100.0):
            raise ValueError(f"percentile must be within 0..100, got {percentile}")
        cdef Py_ssize_t L = self.layout.counts_len
        cdef const int64_t *row = self.counts_ptr + h * L
        # the GIL is held and nothing below calls Python: total and counts agree
        cdef int64_t total = self.stats_ptr[h * FC_HDR_STATS + FC_HDR_TOTAL]
        cdef int64_t target, seen = 0
        cdef Py_ssize_t i, bucket, sub
        if total == 0:
            return 0
        target = <int64_t>(percentile * total / 100.0 + 0.5)
        if target < 1:
            target = 1
        for i in range(L):
            seen += row[i]
            if seen >= target:
                bucket = (i >> self.layout.sub_bucket_half_count_magnitude) - 1
                sub = (i & (self.layout.sub_bucket_half_count - 1)) + self.layout.sub_bucket_half_count
                if bucket < 0:
                    sub -= self.layout.sub_bucket_half_count
                    bucket = 0
                return sub << (bucket + self.layout.unit_magnitude)
        return 0

    def total(self, Py_ssize_t h):
        """Return how many values histogram ``h`` recorded."""
        self._check_row(h)
        return self.stats_ptr[h * FC_HDR_STATS + FC_HDR_TOTAL]

    def reset(self):
        """Zero every histogram (in one step: a concurrent reader sees all or nothing)."""
        memset(self.counts_ptr, 0, self.n * self.layout.counts_len * sizeof(int64_t))
        self._reset_stats()
