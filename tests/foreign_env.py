"""The environment for a server the tests start that is not this project's Python (Chromium,
Prometheus): the test's own, without the sanitizer runtime a sanitized run preloads
(`make test-asan` sets LD_PRELOAD to libasan/libubsan, which those programs cannot run under)."""
import os

SANITIZER_KEYS = ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS", "PYTHONMALLOC")

SANITIZED = "libasan" in os.environ.get("LD_PRELOAD", "")
"""This run is against the ASan/UBSan engine (``make test-asan`` preloads the runtime)."""


def foreign_env() -> dict[str, str]:
    """Return ``os.environ`` without :data:`SANITIZER_KEYS`."""
    return {k: v for k, v in os.environ.items() if k not in SANITIZER_KEYS}
