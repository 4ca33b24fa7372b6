#!/usr/bin/env bash
# One GPU benchmark: build the full-size random-weight checkpoints once (sd15, sd2, sdxl; benchmarks/random_sd.py,
# into $PRODVID_CACHE), run every row of benchmarks/bench_gpu.py in one process, print one markdown table and
# write it with its device, command and date to build/bench-gpu.md (paste it into benchmarks/README.md).
# Fits one ~8-minute run on an H100/H200 (rows past --budget-s, 420 s, are skipped and say so); --quick leaves
# out SDXL and runs 1 SKU per row. --cpu-tiny: the same table on the CPU with the tiny presets (checks the script).
#
#   benchmarks/gpu.sh [--quick] [--cpu-tiny] [--peak-tflops N] [--budget-s S] [--out FILE]   (or: make bench-gpu)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}  # random-weight models and stand-in LoRAs: nothing to download
case " $* " in *" --out "*) out=() ;; *) out=(--out build/bench-gpu.md) ;; esac
exec "$PYTHON" benchmarks/bench_gpu.py "${out[@]}" "$@"
