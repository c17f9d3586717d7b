# Two entry points for a fresh machine: `make demo` and `make test`.
# Both create .venv on first use (pinned versions from constraints.txt) and reuse it.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Some machines' pip configs name local indexes that do not exist; their warnings are noise.
QUIET_PIP := { grep -v "^WARNING: Location" || true; }

.PHONY: demo test test-slow test-vbench test-browser setup clean-venv

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[dev]" 2>&1 | $(QUIET_PIP)
	$(PY) -c "import torch, torchvision, diffusers, peft, open_clip, bench, t2v_turbo_core"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Every VBench dimension through `bench score vbench` with random-weight evaluators, slow ones
# included (creates .venv-vbench on first use; tens of minutes on a small CPU machine).
test-vbench: $(STAMP)
	$(PY) -m pytest -q tests/bench/vbench/test_random_weights.py tests/bench/vbench/test_adapter.py tests/bench/vbench/test_harness.py tests/bench/vbench/test_driver.py

# The human-evaluation page in a real browser: Debian's headless Chromium and its driver
# (installed here if missing; `make test` skips the test where they are absent).
test-browser: $(STAMP)
	command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -q && apt-get install -y -q chromium chromium-driver; }
	$(PY) -m pytest -q -m browser

# The main job on the embedded default: the paper's ablation in the tiny world
# (trains 5 variants, generates them and the 50-step teacher, scores, reports).
# Writes reports/tiny-ablation.{md,csv,json} and its plots; resumes if interrupted.
demo: $(STAMP)
	$(VENV)/bin/bench ablate

clean-venv:
	rm -rf $(VENV)
