# make demo: compile resnet18@0.9 and check it against PyTorch.   make test: the test suite.
# Both create .venv and install everything on first use (torch as a CPU build first).
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast test-all bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/fscnn-tvm demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2

test-fast: $(STAMP)  # skips the heavy tests (tuning jobs, notebooks, calibration, measuring)
	$(PY) -m pytest -q -n 2 -m 'not slow and not heavy'

test-all: $(STAMP)
	$(PY) -m pytest -q -n 2 -m ''

bench: $(STAMP)
	TVM_NUM_THREADS=1 OMP_NUM_THREADS=1 taskset -c 0 $(PY) benchmarks/models.py

clean:
	rm -rf $(VENV) build *.egg-info
