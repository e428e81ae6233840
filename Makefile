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

# The shipped models (after `make pipeline`, on its data): the default model it trained (the seed's
# label, S over 10 modes) and one trained on S over 100 modes, copied into models/ with their
# results (runs/model_default_s10/, runs/model_s100/). Each file carries its data fingerprint,
# label and test R; predict.py falls back on models/default_s10.pth.
models: install
	test -f hybrid_physics_best.pth || { echo "make models: run make pipeline first"; exit 1; }
	$(PY) train.py --LABEL_MODES=100 --OUT_DIR=s100
	mkdir -p models runs/model_default_s10 runs/model_s100
	cp hybrid_physics_best.pth models/default_s10.pth
	cp results.json training_curves.png runs/model_default_s10/
	cp s100/hybrid_physics_best.pth models/s100.pth
	cp s100/results.json s100/training_curves.png runs/model_s100/

# Another glass former end to end (docs/report.md, section 17): a diverse Cu64Zr36 set (30 glasses of
# 1000 atoms, varied density, quench rate and composition), its rotations, models trained on S over
# 10 and 100 modes (runs/model_cuzr_s10/, runs/model_cuzr_s100/, shipped as models/cuzr_s*.pth),
# then every model on every former's test glasses (runs/transfer_between_formers/; needs the
# Kob-Andersen set of `make pipeline` for its rows). About 2 hours on 2 cores.
CUZR := --DATA_DIR=data/cuzr --N_TEST=6 --N_VAL=4
cuzr: install
	$(PY) generate_diverse_data.py --POTENTIAL=cuzr --N_CONFIGS=30 --DATA_DIR=data/cuzr
	$(PY) augment_data.py --DATA_DIR=data/cuzr
	$(PY) train.py $(CUZR) --OUT_DIR=runs/model_cuzr_s10
	$(PY) train.py $(CUZR) --LABEL_MODES=100 --OUT_DIR=runs/model_cuzr_s100
	cp runs/model_cuzr_s10/hybrid_physics_best.pth models/cuzr_s10.pth
	cp runs/model_cuzr_s100/hybrid_physics_best.pth models/cuzr_s100.pth
	$(PY) experiments/does_softness_transfer_between_formers.py

# The optional fifth step (after `make pipeline`): does softness find where the glass yields?
validate: install
	$(PY) validate_rearrangements.py

# Softness against dynamic propensity (docs/report.md, section 18): the public ensembles of
# ../shared/data/propensity (or --ENSEMBLE_DIR); 20-30 min on 2 cores (runs/propensity_botan_t044).
propensity: install
	$(PY) propensity.py

test: install
	$(PY) -m pytest -q tests

bench: install
	$(PY) benchmarks/bench_glass.py
	$(PY) benchmarks/bench_diverse.py
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_predict.py

# On a GPU machine, after installing the CUDA builds (docs/report.md, "GPU users"): the CUDA path's tests
# (float16 AMP, GradScaler, checkpointing, cross-device resume) and its training speed.
gpu-check: install
	$(PY) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu-check: torch sees no CUDA device (docs/report.md: GPU users)')"
	$(PY) -m pytest -q -rs tests/test_cuda.py
	$(PY) benchmarks/bench_gpu.py

# What drives R (needs the 120 glasses of the pipeline; ~45 minutes): docs/report.md, sections 4 and 5.
investigate: install
	$(PY) experiments/what_drives_r.py
	$(PY) experiments/do_unconverged_glasses_change_r.py

.PHONY: install pipeline models cuzr validate propensity test bench investigate gpu-check
