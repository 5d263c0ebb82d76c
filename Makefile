# Two commands for a new user (see README):  make repro   |   make test
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export DVC_NO_ANALYTICS := 1
# Large malloc thresholds avoid page-fault storms in CPU inference on small VMs (measured: ~2x).
export GLIBC_TUNABLES := glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=17179869184
PYTEST_ARGS ?=

.PHONY: help setup repro repro-poster test lint format benchmark clean-cache

help:  ## list the targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*##/\t/'

setup:  ## set up whatever is missing: venv, packages, default images, Jupyter kernel
	@bash scripts/setup.sh

repro: setup  ## set up if needed, then run the whole study on the default (dvc repro)
	dvc repro
	@echo "Rendered notebooks: reports/notebooks/   report: reports/capstone.html   metrics: dvc metrics show"

POSTER_FILES := data/raw/inaturalist/train.json data/raw/insects models/open_clip/ViT-L-14.pt models/torchvision/resnet50.pth

repro-poster: setup  ## the poster's configuration (GPU + data/weights in place): check files, apply configs/poster.yaml, dvc repro
	@missing=0; for f in $(POSTER_FILES); do [ -e "$$f" ] || { echo "missing: $$f (see README, Poster-scale configuration)"; missing=1; }; done; \
	[ $$missing -eq 0 ] || exit 1
	python scripts/apply_params.py configs/poster.yaml
	dvc repro

test: setup  ## set up if needed, then run the test suite (slow end-to-end cases included)
	python -m pytest $(PYTEST_ARGS)

lint:  ## ruff (lint and format check) + mypy
	ruff check src tests benchmarks scripts
	ruff format --check src tests benchmarks scripts
	mypy

format:  ## apply ruff format (line length 120, pyproject.toml)
	ruff format src tests benchmarks scripts

benchmark: setup  ## speed/memory benchmarks, results under reports/benchmarks/
	python benchmarks/bench_kairos.py
	python benchmarks/bench_embed.py
	python benchmarks/bench_prepare.py

clean-cache:  ## remove keyed caches (embeddings, stem features); DVC outputs stay
	rm -rf data/cache
