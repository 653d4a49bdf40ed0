/* FlowChain's nanosecond clock.
 *
 * fc_now_ns() returns monotonic nanoseconds. Where the CPU has an invariant TSC (x86-64, CPUID
 * 0x80000007 EDX bit 8) or the ARMv8 virtual counter, it reads that counter (~8 ns) and scales
 * it by a factor calibrated against the OS monotonic clock; elsewhere, or when calibration is
 * refused, it calls the OS clock (clock_gettime(CLOCK_MONOTONIC), QueryPerformanceCounter on
 * Windows, ~24 ns). Portable C: GCC/Clang on POSIX, MSVC on Windows.
 */
#ifndef FLOWCHAIN_CLOCK_H
#define FLOWCHAIN_CLOCK_H

#include <stdint.h>

#if defined(_WIN32)
#  define WIN32_LEAN_AND_MEAN
#  include <windows.h>
#  include <intrin.h>
#  define FC_X86 1
#else
#  include <time.h>
#  if defined(__x86_64__) || defined(__i386__)
#    include <x86intrin.h>
#    include <cpuid.h>
#    define FC_X86 1
#  elif defined(__aarch64__)
#    define FC_ARM64 1
#  endif
#endif

enum { FC_CLOCK_OS = 0, FC_CLOCK_COUNTER = 1 };

typedef struct {
    int source;            /* FC_CLOCK_OS or FC_CLOCK_COUNTER */
    uint64_t base_ticks;   /* counter value at calibration */
    int64_t base_ns;       /* OS monotonic ns at calibration */
    double ns_per_tick;    /* calibrated scale */
#if defined(_WIN32)
    double qpc_ns_per_tick;
#endif
} fc_clock_state;

static fc_clock_state fc_clock = {FC_CLOCK_OS, 0, 0, 1.0
#if defined(_WIN32)
    , 0.0
#endif
};

static inline int64_t fc_os_now_ns(void) {
#if defined(_WIN32)
    LARGE_INTEGER c;
    if (fc_clock.qpc_ns_per_tick == 0.0) {
        LARGE_INTEGER f;
        QueryPerformanceFrequency(&f);
        fc_clock.qpc_ns_per_tick = 1e9 / (double)f.QuadPart;
    }
    QueryPerformanceCounter(&c);
    return (int64_t)((double)c.QuadPart * fc_clock.qpc_ns_per_tick);
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + (int64_t)ts.tv_nsec;
#endif
}

/* 1 when the hardware counter is usable as a clock: invariant TSC or the ARMv8 counter. */
static inline int fc_counter_available(void) {
#if defined(FC_X86)
    unsigned int regs[4] = {0, 0, 0, 0};
#  if defined(_WIN32)
    int r[4];
    __cpuid(r, 0x80000000);
    if ((unsigned int)r[0] < 0x80000007u) return 0;
    __cpuid(r, 0x80000007);
    regs[3] = (unsigned int)r[3];
#  else
    if (__get_cpuid_max(0x80000000u, 0) < 0x80000007u) return 0;
    __get_cpuid(0x80000007u, &regs[0], &regs[1], &regs[2], &regs[3]);
#  endif
    return (regs[3] >> 8) & 1u;
#elif defined(FC_ARM64)
    return 1;
#else
    return 0;
#endif
}

static inline uint64_t fc_read_counter(void) {
#if defined(FC_X86)
    return (uint64_t)__rdtsc();
#elif defined(FC_ARM64)
    uint64_t v;
    __asm__ __volatile__("isb; mrs %0, cntvct_el0" : "=r"(v) :: "memory");
    return v;
#else
    return 0;
#endif
}

static inline int64_t fc_now_ns(void) {
    if (fc_clock.source == FC_CLOCK_COUNTER) {
        uint64_t d = fc_read_counter() - fc_clock.base_ticks;
        return fc_clock.base_ns + (int64_t)((double)d * fc_clock.ns_per_tick);
    }
    return fc_os_now_ns();
}

/* Busy-calibrate the counter against the OS clock for about `window_ns`. Returns the source
 * chosen. `allow_counter` = 0 forces the OS clock. */
static inline int fc_clock_calibrate(int64_t window_ns, int allow_counter) {
    if (!allow_counter || !fc_counter_available()) {
        fc_clock.source = FC_CLOCK_OS;
        return fc_clock.source;
    }
    int64_t ns0 = fc_os_now_ns();
    uint64_t t0 = fc_read_counter();
    int64_t ns1;
    uint64_t t1;
    do {
        ns1 = fc_os_now_ns();
        t1 = fc_read_counter();
    } while (ns1 - ns0 < window_ns);
    if (t1 <= t0) {
        fc_clock.source = FC_CLOCK_OS;
        return fc_clock.source;
    }
    fc_clock.ns_per_tick = (double)(ns1 - ns0) / (double)(t1 - t0);
    fc_clock.base_ticks = t1;
    fc_clock.base_ns = ns1;
    fc_clock.source = FC_CLOCK_COUNTER;
    return fc_clock.source;
}

#endif /* FLOWCHAIN_CLOCK_H */
