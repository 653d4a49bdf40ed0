"""Load the compiled engine, or fail with instructions: there is no pure-Python fallback."""
import importlib.util

if importlib.util.find_spec("flowchain._engine") is None:
    raise ImportError(
        "flowchain's native engine (flowchain._engine) is not built. Build it with "
        "`pip install -e .` (or `pip install .`) from the source tree; it needs Cython>=3.0 "
        "and a C compiler. For a debug build: `FLOWCHAIN_DEBUG=1 pip install -e .`.",
        name="flowchain._engine")

from flowchain import _engine as engine  # noqa: E402  (a broken build raises its own error)

# The ring's execution status codes, defined once in the engine; import them from here.
STATUS_PENDING: int = engine.STATUS_PENDING
STATUS_RUNNING: int = engine.STATUS_RUNNING
STATUS_SUCCEEDED: int = engine.STATUS_SUCCEEDED
STATUS_FAILED: int = engine.STATUS_FAILED

__all__ = ["STATUS_FAILED", "STATUS_PENDING", "STATUS_RUNNING", "STATUS_SUCCEEDED", "engine"]
