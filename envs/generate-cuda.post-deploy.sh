#!/usr/bin/env bash
# Snakemake runs this inside the new conda environment, from the workflow directory:
# install lorapress itself (its dependencies come from the environment file).
set -euo pipefail
python -m pip install --no-deps --no-build-isolation -e .
