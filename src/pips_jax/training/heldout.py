"""Periodic evaluation on a fixed held-out synthetic set.

The set is ``eval_clips`` clips of the synthetic benchmark made from seed
:data:`EVAL_SEED` (a seed range the training data never uses), at
``TrainConfig.eval_size`` with ``eval_frames`` frames. The parameters run through the
whole-video :class:`~pips_jax.tracker.Tracker` (PIPs++ in the tracker's default
window) and are scored with the TAP-Vid metrics and the PIPs++ paper's
(:data:`HELDOUT_METRICS`) by :func:`pips_jax.evaluation.runner.evaluate`
(``query_mode='first'``, metrics at 256x256), exactly as ``pips-jax eval --format
synthetic`` does, beside the zero-motion baseline. PIPs++ predicts no visibility: its
AJ and OA count a point visible wherever its predicted position lies on the frame,
as ``pips-jax eval`` scores it.

In a job of many processes every process evaluates at the same step: each tracks its
share of the clips (every ``P``-th, :func:`~pips_jax.evaluation.runner.evaluate`'s
``share``) on its own devices and the per-clip results are gathered, so every process
gets the scores one process would compute. No process waits idle at a collective for
another's whole evaluation (a long wait could outlast the collectives' timeout), and
none waits on a collective the others never reach.
"""

from __future__ import annotations

from typing import Any

import jax

from pips_jax.evaluation.runner import (
    PIPS2_KEYS,
    SUMMARY_METRICS,
    evaluate,
    synthetic_samples,
    tracker_predictor,
)
from pips_jax.inference import FAMILY_DEFAULTS
from pips_jax.model.pips import Params
from pips_jax.synthetic import SyntheticConfig
from pips_jax.training.config import TrainConfig

#: Seed of the held-out clips (``SyntheticDataset(seed=EVAL_SEED)``).
EVAL_SEED = 1_000_000
#: Refinement iterations at evaluation, per family: the family's inference default
#: (PIPs 6, as the original demo; PIPs++ 16, as its ``test_on_tap.py``), whatever the
#: run trains with, so that the curves of all runs of a family compare.
EVAL_ITERS: dict[str, int] = {family: d["iters"] for family, d in FAMILY_DEFAULTS.items()}
#: The metrics logged at each evaluation (and, with ``zero_motion_``, the baseline's).
HELDOUT_METRICS = SUMMARY_METRICS + tuple(key for key, _ in PIPS2_KEYS)


class HeldOutSet:
    """The held-out clips (generated once) and a tracker reused between evaluations."""

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        h, w = cfg.eval_size
        config = SyntheticConfig(
            height=h,
            width=w,
            num_frames=cfg.eval_frames,
            num_objects=cfg.num_objects,
            num_points=max(1, min(256, (h - 3) * (w - 3) // 4)),
        )
        self.samples = list(synthetic_samples(cfg.eval_clips, EVAL_SEED, config))
        self._tracker = None

    def evaluate(self, params: Params) -> dict[str, Any]:
        """TAP-Vid metrics of ``params`` on the set, and the zero-motion baseline's.

        In a job, every process must call it at the same point (see the module
        docstring).

        Returns:
            ``{metric: value}`` of :data:`HELDOUT_METRICS` for the model (TAP-Vid
            fractions in [0, 1], ``d_avg`` and ``survival_16`` percent, errors in pixels
            at 256x256) plus ``zero_motion_<metric>``.
        """
        from pips_jax.tracker import Tracker

        # A host copy: the training state may live on every process's devices, the
        # tracker runs on this process's own (its default mesh).
        params = jax.device_get(params)
        model = self.cfg.model
        if self._tracker is None:
            self._tracker = Tracker(
                params, model, resolution=self.cfg.eval_size, iters=EVAL_ITERS[model.family]
            )
        else:  # the compiled functions take the parameters as arguments: no recompiling
            self._tracker.params = params
        report = evaluate(
            self.samples,
            {model.family: tracker_predictor(self._tracker)},
            query_mode="first",
            dataset=f"held-out synthetic, {len(self.samples)} clips, seed {EVAL_SEED}",
            fmt="synthetic",
            input_resolution=tuple(self.cfg.eval_size),
            weights="training",
            share=(jax.process_index(), jax.process_count()),
        )
        out = {k: report.scores[model.family][k] for k in HELDOUT_METRICS}
        out.update({f"zero_motion_{k}": report.scores["zero_motion"][k] for k in HELDOUT_METRICS})
        return out
