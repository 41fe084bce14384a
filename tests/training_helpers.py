"""Shared pieces of the training tests: a tiny run config and its initial parameters."""

import functools
from pathlib import Path

import jax

from pips_jax.checkpoint.store import save_params
from pips_jax.training import TrainConfig
from pips_jax.training.log import read_records
from pips_jax.training.trainer import init_params
from small_model import SMALL

# 2 clips of 8 frames at 32x32, 8 points, 2 iterations; lr raised so 30 steps overfit.
TINY = TrainConfig(
    model=SMALL, batch_size=2, num_points=8, iters=2, crop=(32, 32), num_steps=30, lr=2e-3,
    log_every=1, checkpoint_every=100, eval_every=0, eval_clips=1, eval_size=(32, 32),
    eval_frames=8,
)  # fmt: skip


@functools.cache
def tiny_params() -> dict:
    """Initial parameters of SMALL, seed 0 (the program is shared with ``train``)."""
    return jax.device_get(init_params(SMALL, 0))


def write_tiny_params(path: Path) -> Path:
    return save_params(path, tiny_params(), SMALL)


def train_records(run_dir: Path) -> list[dict]:
    return [r for r in read_records(Path(run_dir) / "metrics.jsonl") if r["type"] == "train"]
