"""Load the compiled engine, or fail with instructions: there is no pure-Python fallback."""
try:
    from flowchain import _engine as engine
except ImportError as exc:  # pragma: no cover - exercised by tests/test_native.py in a subprocess
    raise ImportError(
        "flowchain's native engine (flowchain._engine) is not built. Build it with "
        "`pip install -e .` (or `pip install .`) from the source tree; it needs Cython>=3.0 "
        "and a C compiler. For a debug build: `FLOWCHAIN_DEBUG=1 pip install -e .`."
    ) from exc

__all__ = ["engine"]
