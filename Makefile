# Two commands on a fresh machine: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install demo test lint format clean train-data eval-data default-weights

$(STAMP): pyproject.toml Makefile
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) (set PYTHON=...)"; exit 1; }
	[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check "$(TORCH_SPEC)"
	$(PY) -m pip install -q --disable-pip-version-check -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/spikereveal demo --out build/demo

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .

clean:
	rm -rf build .pytest_cache

# ---- The project's own default LDN weights (engine/default_weights/README.md, "Recipe") ------
# `make default-weights` simulates the training set (once; `make train-data` rebuilds it when
# the simulator changes) and trains the LDN from scratch on it; `make eval-data` simulates the
# held-out test scenes. Everything is deterministic: the same commands give the same data.
SPIKEREVEAL := $(VENV)/bin/spikereveal
TRAIN_DATA ?= build/train-data
EVAL_DATA ?= build/eval-data
WEIGHTS_OUT ?= build/default-weights/ldn.safetensors
MINUTES ?= 30
# Scale every training crop's spikes to the density at paper Vth 1 (1.985 / 2), the density the
# LDN's inference then normalizes any sensor to, so that Vth 1, 2 and 4 train one input scale.
TRAIN_FLAGS ?= --density-target 0.9925
SPIKE_SIZE ?= 96x128
TRAIN_VTHS ?= 1 2 4
TRAIN_SAMPLES ?= 3
TRAIN_NOISE ?= 0
MOTIONS := pan rotate zoom mixed
# Built-in textures: never astronaut, chelsea/cat, coffee or rocket (held out for evaluation;
# tests/tools/test_default_weights.py checks this list).
TRAIN_TEXTURES ?= camera coins horse hubble_deep_field immunohistochemistry moon page text retina \
	brick grass gravel colorwheel cell clock microaneurysms procedural:1 procedural:2
# Real photos where Debian's mate-backgrounds is installed (training data only: never committed;
# the data builds without them). The abstract set's two large copies of Elephants are left out.
MATE := /usr/share/backgrounds/mate
TRAIN_PHOTOS ?= $(wildcard $(MATE)/nature/*.jpg) \
	$(filter-out %_3840x2160.jpg %_5640x3172.jpg,$(wildcard $(MATE)/abstract/*.jpg $(MATE)/abstract/*.png))
EVAL_TEXTURES := astronaut chelsea coffee rocket
EVAL_SAMPLES ?= 4
EVAL_SEED ?= 1000
SIM_SOURCES := capture/scenes.py capture/simulation.py capture/spike_camera.py tools/simulate.py tools/simulate_cmd.py
# What the data needs installed first (a test that runs these recipes on a tiny set empties it).
SIM_NEEDS ?= $(STAMP)

# One scene per (threshold, texture): the motion cycles through $(MOTIONS) and the seed (which
# draws the trajectory, the texture's region and camera noise) counts up, so no two scenes match.
$(TRAIN_DATA)/.complete: $(SIM_SOURCES) | $(SIM_NEEDS)
	rm -rf $(TRAIN_DATA)
	@i=0; set -- $(MOTIONS); n=$$#; \
	for vth in $(TRAIN_VTHS); do for tex in $(TRAIN_TEXTURES) $(TRAIN_PHOTOS); do \
	  motion=$$(echo $(MOTIONS) | cut -d' ' -f$$((i % n + 1))); \
	  name=$$(basename "$$tex"); name=$$(echo "$${name%.*}" | tr -c 'A-Za-z0-9_\n-' '-'); \
	  scene=$$(printf 's%03d' $$i)-$$motion-$$name-vth$$vth; \
	  $(SPIKEREVEAL) simulate --builtin motion --motion $$motion --texture "$$tex" --vth $$vth --seed $$i \
	    --noise $(TRAIN_NOISE) --samples $(TRAIN_SAMPLES) --spike-size $(SPIKE_SIZE) --sharp-times 68 \
	    --scene $$scene --append --out $(TRAIN_DATA) --quiet || exit 1; \
	  i=$$((i + 1)); \
	done; done; echo "$$i scenes in $(TRAIN_DATA)"
	du -sh $(TRAIN_DATA)
	touch $@

train-data: $(TRAIN_DATA)/.complete

# The held-out test set: the four held-out photos at each threshold, one folder per threshold,
# with ground truth at the paper's five times; the same scenes (seeds) at every threshold.
$(EVAL_DATA)/.complete: $(SIM_SOURCES) | $(SIM_NEEDS)
	rm -rf $(EVAL_DATA)
	@for vth in 1 2 4; do i=0; set -- $(MOTIONS); \
	  for tex in $(EVAL_TEXTURES); do motion=$$1; shift; \
	    $(SPIKEREVEAL) simulate --builtin motion --motion $$motion --texture $$tex --vth $$vth \
	      --seed $$(($(EVAL_SEED) + i)) --samples $(EVAL_SAMPLES) --spike-size $(SPIKE_SIZE) \
	      --scene $$tex-$$motion --append --out $(EVAL_DATA)/vth$$vth --quiet || exit 1; \
	    i=$$((i + 1)); \
	  done; done
	du -sh $(EVAL_DATA)
	touch $@

eval-data: $(EVAL_DATA)/.complete

# Trained into build/ (with its loss log and checkpoints), then the weights and the loss record
# are copied into the package.
default-weights: $(TRAIN_DATA)/.complete
	mkdir -p $(dir $(WEIGHTS_OUT))
	$(SPIKEREVEAL) train ldn --teacher sdm --data $(TRAIN_DATA) --out $(WEIGHTS_OUT) \
	  --minutes $(MINUTES) --seed 0 $(TRAIN_FLAGS)
	cp $(WEIGHTS_OUT) engine/default_weights/ldn.safetensors
	cp $(basename $(WEIGHTS_OUT)).losses.csv engine/default_weights/ldn.losses.csv
	-cp $(basename $(WEIGHTS_OUT)).losses.png engine/default_weights/ldn.losses.png
	$(SPIKEREVEAL) weights info engine/default_weights/ldn.safetensors
