"""Evaluation on the TAP-Vid benchmark: metrics (:mod:`.metrics`), dataset readers and
query sampling (:mod:`.datasets`) and synthetic clips with exact ground truth
(:mod:`.synthetic`)."""

from pips_jax.evaluation.metrics import (
    aggregate_metrics,
    compute_tapvid_metrics,
    trajectory_errors,
    zero_motion_prediction,
)

__all__ = [
    "aggregate_metrics",
    "compute_tapvid_metrics",
    "trajectory_errors",
    "zero_motion_prediction",
]
