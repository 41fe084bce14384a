"""What this machine's XLA reaches on the forward's two kinds of heavy work.

    python benchmarks/peaks.py [--json OUT.json]

Measures float32 GFLOP/s of (a) the MLP-Mixer's channel-mixing matmuls at the reference
size (2048 x 512 @ 512 x 2048 and back, chained 12 times, as in one refinement step of
256 points) and (b) the encoder's largest convolution (3x3, 416 -> 256 channels on
eight 90x160 maps). With the analytic FLOP count of the reference forward
(:func:`pips_jax.benchmark.forward_flops`), these give the time the forward could take
if every convolution and every matmul ran at these rates: the floor the benchmark
compares against.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from pips_jax.benchmark import encoder_flops, iteration_flops, machine_info
from pips_jax.config import ModelConfig


def _best(f, *args, runs: int = 5) -> float:
    jax.block_until_ready(f(*args))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t0)
    return min(times)


def matmul_gflops() -> float:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(2048, 512)).astype(np.float32))
    w1 = jnp.asarray(rng.normal(size=(512, 2048)).astype(np.float32) / 23)
    w2 = jnp.asarray(rng.normal(size=(2048, 512)).astype(np.float32) / 45)

    @jax.jit
    def chain(x, w1, w2):
        for _ in range(12):
            x = x + (x @ w1) @ w2
        return x

    flops = 12 * 2 * (2 * 2048 * 512 * 2048)
    return flops / _best(chain, x, w1, w2) / 1e9


def conv_gflops() -> float:
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(8, 90, 160, 416)).astype(np.float32))
    w = jnp.asarray(rng.normal(size=(3, 3, 416, 256)).astype(np.float32) / 60)
    conv = jax.jit(
        lambda x, w: lax.conv_general_dilated(
            x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    )
    flops = 2 * 8 * 90 * 160 * 9 * 416 * 256
    return flops / _best(conv, x, w) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    cfg = ModelConfig()
    enc = cfg.S * encoder_flops(cfg, 360, 640)
    mix = 6 * iteration_flops(cfg, 256)
    mm, cv = matmul_gflops(), conv_gflops()
    floor = enc / (cv * 1e9) + mix / (mm * 1e9)
    out = {
        "machine": machine_info(),
        "matmul_gflops": mm,
        "conv_gflops": cv,
        "reference_encoder_tflop": enc / 1e12,
        "reference_iterations_tflop": mix / 1e12,
        "reference_floor_s": floor,
    }
    print(
        f"matmul {mm:.0f} GFLOP/s, convolution {cv:.0f} GFLOP/s; reference forward "
        f"{enc / 1e12:.3f} TFLOP encoder + {mix / 1e12:.3f} TFLOP iterations -> floor {floor:.2f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
