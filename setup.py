"""Build the one native extension, ``flowchain._engine``, from ``native/engine.pyx``.

Everything else (metadata, dependencies, extras) lives in pyproject.toml.

Environment switches:
    FLOWCHAIN_DEBUG=1     line tracing, assertions, ``-O0 -g``: a debug build for profilers
                          and debuggers.
    FLOWCHAIN_SANITIZE=1  with FLOWCHAIN_DEBUG, build with AddressSanitizer/UBSan (load it with
                          the ASan runtime preloaded: ``make test-asan`` shows how).
"""
import os
import sys

from setuptools import Extension, setup

try:
    from Cython.Build import cythonize
except ImportError as exc:  # the build must fail loudly, never fall back to pure Python
    raise SystemExit(
        "flowchain needs Cython>=3.0 to build its native engine (flowchain._engine).\n"
        "Install it with `pip install 'Cython>=3.0.10'` or build through pip, which reads\n"
        "pyproject.toml's [build-system] requirements: `pip install .`"
    ) from exc

import numpy

DEBUG = os.environ.get("FLOWCHAIN_DEBUG", "") not in ("", "0")
SANITIZE = os.environ.get("FLOWCHAIN_SANITIZE", "") not in ("", "0")

# CYTHON_CLINE_IN_TRACEBACK=0: a failing step's traceback names no C lines, and raising
# through the engine skips the runtime lookup that decides whether it should.
macros = [("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION"), ("CYTHON_CLINE_IN_TRACEBACK", "0")]
directives = {
    "language_level": "3",
    "boundscheck": False,
    "wraparound": False,
    "initializedcheck": False,
    "cdivision": True,
    "embedsignature": True,
}
if sys.platform == "win32":
    compile_args = ["/Od", "/Zi"] if DEBUG else ["/O2"]
    link_args = []
else:
    compile_args = ["-O0", "-g3"] if DEBUG else ["-O2", "-fno-strict-aliasing"]
    link_args = []
    if DEBUG and SANITIZE:
        compile_args += ["-fsanitize=address,undefined", "-fno-omit-frame-pointer"]
        link_args += ["-fsanitize=address,undefined"]
if DEBUG:
    directives.update({"linetrace": True, "profile": True, "boundscheck": True})
    macros += [("CYTHON_TRACE", "1"), ("CYTHON_TRACE_NOGIL", "1")]

engine = Extension(
    "flowchain._engine",
    ["native/engine.pyx"],
    include_dirs=["native", numpy.get_include()],
    define_macros=macros,
    extra_compile_args=compile_args,
    extra_link_args=link_args,
    depends=[
        "native/clock.h",
        "native/alloc.h",
        "native/alloc.pxi",
        "native/hdr.h",
        "native/clock.pxi",
        "native/hdr.pxi",
        "native/ring.pxi",
        "native/failures.pxi",
        "native/runner.pxi",
        "native/admission.pxi",
    ],
)

setup(
    ext_modules=cythonize(
        [engine],
        compiler_directives=directives,
        annotate=DEBUG,
        force=DEBUG,
        # a debug build's C (bounds checks, line tracing) never replaces native/engine.c,
        # which an optimized build would otherwise reuse
        build_dir="build/cython-debug" if DEBUG else None,
    ),
)
