"""Evaluation on the TAP-Vid benchmark: metrics (:mod:`.metrics`), dataset readers,
query sampling and the TAP-Vid export of synthetic clips (:mod:`.datasets`), and the
runner that reports a tracker beside a baseline (:mod:`.runner`). The synthetic clips
themselves come from :mod:`pips_jax.synthetic`."""

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
