# The two commands of the README, and the build switches behind them.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install node test bench debug clean

$(STAMP): pyproject.toml setup.py $(wildcard native/*)
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test,otel]'
	touch $(STAMP)

install: $(STAMP)

## node: run the trading node on its embedded defaults (simulated feed, paper broker, ./flowchain.db)
node: $(STAMP)
	$(BIN)/flowchain node

## test: the whole suite, latency gates included
test: $(STAMP)
	$(BIN)/python -m pytest

## bench: the figures the README quotes: all four benchmarks, each run even after one fails; exits non-zero if any command does
BENCHMARKS ?= overhead wire node observe
bench: $(STAMP)
	@status=0; for b in $(BENCHMARKS); do \
		echo "== flowchain bench $$b"; $(BIN)/flowchain bench $$b || status=1; \
	done; exit $$status

## debug: rebuild the engine with line tracing and -O0 (FLOWCHAIN_SANITIZE=1 adds ASan/UBSan)
debug:
	FLOWCHAIN_DEBUG=1 $(BIN)/python -m pip install -q --no-build-isolation -e .

clean:
	rm -rf build $(VENV) flowchain/*.so native/engine.c
