# The two commands of the README, and the build switches behind them.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

BUILD_DEPS := 'setuptools>=77' wheel 'Cython>=3.0.10' 'numpy>=1.26'
ASAN_VENV ?= .venv-asan
ASAN_SRC := build/asan-src
SANITIZED_TESTS ?= tests

.PHONY: install node test lint bench debug test-asan clean

$(STAMP): pyproject.toml setup.py bridge/pyproject.toml $(wildcard native/*.pyx native/*.pxi native/*.h)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	rm -f flowchain/_engine*.so  # never keep a debug build's engine
	$(BIN)/python -m pip install -q -e ./bridge -e '.[test,otel]'
	touch $(STAMP)

install: $(STAMP)

## node: run the trading node on its embedded defaults (simulated feed, paper broker, ./flowchain.db)
node: $(STAMP)
	$(BIN)/flowchain node

## test: the whole suite, latency gates included
test: $(STAMP)
	$(BIN)/python -m pytest

## lint: ruff (the rule sets in pyproject.toml), mypy over the public API (pyproject's files)
## and stubtest of the engine's .pyi against the compiled module; tests/test_lint.py and
## tests/test_typing.py run the same checks in the suite
LINTED := flowchain tests benchmarks examples scripts
lint: $(STAMP)
	$(BIN)/python -m ruff check $(LINTED)
	$(BIN)/python -m mypy
	$(BIN)/python -m mypy.stubtest flowchain._engine --mypy-config-file pyproject.toml \
	  --allowlist native/stubtest-allowlist.txt

## bench: the figures the README quotes: every benchmark, each run even after one fails; exits non-zero if any command does
BENCHMARKS ?= overhead wire node observe tenancy profile hub
bench: $(STAMP)
	@status=0; for b in $(BENCHMARKS); do \
		echo "== flowchain bench $$b"; $(BIN)/flowchain bench $$b || status=1; \
	done; exit $$status

## debug: rebuild the engine in place with line tracing, bounds checks and -O0 (its C goes to
## build/cython-debug, never over native/engine.c); `make install` builds the optimized one again
debug:
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(BUILD_DEPS)
	rm -f flowchain/_engine*.so $(STAMP)
	FLOWCHAIN_DEBUG=1 $(BIN)/python -m pip install -q --no-build-isolation -e ./bridge -e '.[test,otel]'

## test-asan: the whole test suite (tests/; the latency gates in benchmarks/ measure the optimized
## build) against an AddressSanitizer/UBSan build of the engine, in
## its own venv ($(ASAN_VENV)) and its own copy of the tree ($(ASAN_SRC)), so neither the
## optimized engine nor native/engine.c is touched. CPython itself is not instrumented: the ASan
## runtime is preloaded, pymalloc is off (every object is a malloc ASan sees), leaks unchecked,
## SIGSEGV left to the process (a test crashes a worker on purpose). Chromium and Prometheus
## are started without the preload (tests/foreign_env.py).
test-asan:
	test -x $(ASAN_VENV)/bin/python || $(PY) -m venv $(ASAN_VENV)
	$(ASAN_VENV)/bin/python -m pip install -q $(BUILD_DEPS)
	rm -rf $(ASAN_SRC) && mkdir -p $(ASAN_SRC)
	tar -c --exclude=./.git --exclude='./.venv*' --exclude=./build --exclude='*.so' \
	  --exclude=./native/engine.c --exclude=__pycache__ --exclude='*.db*' . | tar -x -C $(ASAN_SRC)
	cd $(ASAN_SRC) && FLOWCHAIN_DEBUG=1 FLOWCHAIN_SANITIZE=1 \
	  $(CURDIR)/$(ASAN_VENV)/bin/python -m pip install -q --no-build-isolation -e ./bridge -e '.[test]'
	ldd $(ASAN_SRC)/flowchain/_engine*.so | grep -q libasan || \
	  { echo "the engine in $(ASAN_SRC) is not built with AddressSanitizer" >&2; exit 1; }
	cd $(ASAN_SRC) && \
	  LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
	  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1:strict_init_order=1:handle_segv=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 PYTHONMALLOC=malloc \
	  $(CURDIR)/$(ASAN_VENV)/bin/python -m pytest -q -p no:cacheprovider $(SANITIZED_TESTS)

clean:
	rm -rf build $(VENV) $(ASAN_VENV) flowchain/*.so native/engine.c
