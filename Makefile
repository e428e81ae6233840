# Two entry points (README.md): `make pipeline` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q -r requirements.txt
	$(PY) -c "import jax, jax_md, torch, torch_geometric, scipy, matplotlib, tqdm"
	touch $@

install: $(VENV)/.installed

# The whole pipeline on its defaults: the four scripts in order.
pipeline: install
	$(PY) generate_glass_data.py
	$(PY) generate_diverse_data.py
	$(PY) augment_data.py
	$(PY) train.py

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) tests/benchmarks/bench_glass.py
	$(PY) tests/benchmarks/bench_diverse.py
	$(PY) tests/benchmarks/bench_train.py

# What drives R (needs the 120 glasses of the pipeline; ~45 minutes): README "Results".
investigate: install
	$(PY) tests/benchmarks/what_drives_r.py
	$(PY) tests/benchmarks/unconverged.py

.PHONY: install pipeline test bench investigate
