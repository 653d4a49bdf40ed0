/* Native HdrHistogram recording: the same bucket layout as HdrHistogram (Java, C and the
 * `hdrhistogram` Python package), so a counts array written here converts losslessly into an
 * hdrh.histogram.HdrHistogram built with the same (lowest, highest, significant figures).
 * Only recording lives here; percentiles, encoding and merging are cold-path work done by the
 * hdrhistogram package. */
#ifndef FLOWCHAIN_HDR_H
#define FLOWCHAIN_HDR_H

#include <stdint.h>
#if defined(_MSC_VER)
#  include <intrin.h>
#endif

typedef struct {
    int unit_magnitude;
    int sub_bucket_half_count_magnitude;
    int64_t sub_bucket_half_count;
    int64_t sub_bucket_mask;
    int64_t counts_len;
    int64_t highest;          /* values above are clamped here and counted as overflow */
} fc_hdr_layout;

/* Per-histogram running stats, stored beside the counts. */
enum { FC_HDR_TOTAL = 0, FC_HDR_MIN = 1, FC_HDR_MAX = 2, FC_HDR_OVERFLOW = 3, FC_HDR_STATS = 4 };

static inline int fc_clz64(uint64_t v) {
#if defined(_MSC_VER)
    unsigned long idx;
    _BitScanReverse64(&idx, v);
    return 63 - (int)idx;
#else
    return __builtin_clzll(v);
#endif
}

static inline int64_t fc_hdr_index(const fc_hdr_layout *L, int64_t value) {
    /* value | mask is never 0, so clz is defined */
    int pow2ceiling = 64 - fc_clz64((uint64_t)(value | L->sub_bucket_mask));
    int bucket = pow2ceiling - L->unit_magnitude - (L->sub_bucket_half_count_magnitude + 1);
    int64_t sub_bucket = value >> (bucket + L->unit_magnitude);
    return ((int64_t)(bucket + 1) << L->sub_bucket_half_count_magnitude)
           + (sub_bucket - L->sub_bucket_half_count);
}

static inline void fc_hdr_record(const fc_hdr_layout *L, int64_t *counts, int64_t *stats,
                                 int64_t value) {
    if (value < 0) value = 0;
    if (value > L->highest) {
        value = L->highest;
        stats[FC_HDR_OVERFLOW] += 1;
    }
    counts[fc_hdr_index(L, value)] += 1;
    stats[FC_HDR_TOTAL] += 1;
    if (value < stats[FC_HDR_MIN]) stats[FC_HDR_MIN] = value;
    if (value > stats[FC_HDR_MAX]) stats[FC_HDR_MAX] = value;
}

#endif /* FLOWCHAIN_HDR_H */
