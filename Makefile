# Two commands: `make quickstart` and `make test`. Each sets up .venv by itself.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: quickstart test test-all install clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# No GPU here: take the local CPU wheel of torch before anything can pull a CUDA build.
	if ! command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/python -m pip install -q torch==2.13.0; fi
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

quickstart: $(STAMP)
	$(BIN)/python -m pdesurrogates quickstart --out runs/quickstart

# pytest's exit code 5 means "no tests collected": not a set-up failure.
# One BLAS/OpenMP thread per process: on a 2-core machine shared with worker processes (DataLoader
# workers, 2-rank DDP, notebook kernels) oversubscribed threads made runs several times slower.
test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -m "not slow and not gpu" -q; rc=$$?; if [ $$rc -eq 5 ]; then exit 0; fi; exit $$rc

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs
