# Set-up and the everyday commands. Every target installs what it needs first.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DATA_DIR ?= $(HOME)/data/rvq
RUNS_DIR ?= $(HOME)/runs
export PYTHONUNBUFFERED := 1

.PHONY: install system-deps demo test test-slow data bench lint clean semantic-compare

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torchaudio from PyPI loads only beside its own torch release: install the pair first.
	$(PY) -m pip install -q torch==2.9.1 torchaudio==2.9.1
	$(PY) -m pip install -q -e '.[train,eval,data,semantic,export,dev]'
	$(PY) -m pip check
	touch $@

install: system-deps $(VENV)/.installed

# ffmpeg (libopus, codec2, GSM, Speex baselines and G.722 decoding), sox, festival with its English voices
# (`codec voices`, the parallel-text speaker probe), and chromium (the test that loads the listening page in a
# headless browser). The festival and chromium tests are skipped where those are missing.
system-deps:
	@command -v ffmpeg >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq ffmpeg sox >/dev/null; \
	  else echo "ffmpeg is missing: run 'sudo apt-get install ffmpeg sox'"; exit 1; fi; }
	@command -v text2wave >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq festival festvox-kallpc16k \
	    festvox-kdlpc16k festvox-us-slt-hts >/dev/null; \
	  else echo "festival is missing (codec voices and its tests): 'sudo apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts'"; fi; }
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing (the listening page's browser test will be skipped): 'sudo apt-get install chromium'"; fi; }

demo: install
	$(PY) -m eval.demo

test: install
	$(PY) -m pytest -q

test-slow: install
	$(PY) -m pytest -q -m slow

data: install
	$(PY) -m train.corpus --out $(DATA_DIR)

# Semantic distillation off and on: two runs of STEPS steps (running it again resumes them), then the
# phone purity, PNMI and speaker-probe table of both models (eval/phonetic.py). INIT=<saved model>
# starts both from the same trained codec (a fine-tune), which a CPU can afford; empty trains from scratch.
STEPS ?= 20000
INIT ?=
train-or-resume = $(PY) -m train --config configs/$(1).yaml --run-dir $(2) --quiet steps=$(STEPS) \
	$(if $(INIT),init=$(INIT)) $$(ls $(2)/checkpoints 2>/dev/null | grep -q step- && echo --resume)
semantic-compare: install
	$(call train-or-resume,speech16k,$(RUNS_DIR)/compare-plain)
	$(call train-or-resume,speech16k_semantic,$(RUNS_DIR)/compare-semantic)
	$(PY) -m eval.phonetic --model $(RUNS_DIR)/compare-plain/model --model $(RUNS_DIR)/compare-semantic/model \
	  --json $(RUNS_DIR)/compare-phonetic.json --quiet

lint: install
	$(VENV)/bin/ruff check codec train eval tests

clean:
	rm -rf $(VENV) .pytest_cache
