#!/usr/bin/env bash
# The one prepared run for a session that is lent a GPU (kept short: the reference
# forward, the precision question and the scaling table; about 5 minutes on one GPU).
# Writes into ${OUT:-benchmarks/results/gpu}. JAX for the GPU must already be installed.
set -euo pipefail
out="${OUT:-benchmarks/results/gpu}"
mkdir -p "$out"
python -c "import jax; print(jax.devices())" | tee "$out/devices.txt"
# reference forward; float32 (full precision, what --precision float32 runs), XLA's
# default precision and bfloat16, each with its distance in px from full float32
pips-jax benchmark --config sweep --runs 5 --timeout 240 --json "$out/sweep.json" --table "$out/sweep.md"
# track and train on 1..D of the machine's GPUs
pips-jax benchmark --config scaling --timeout 240 --json "$out/scaling.json" --table "$out/scaling.md"
