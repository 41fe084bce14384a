"""tools/ship_weights.py: the card after one more training stage, on a hand-made card."""

import importlib.util
import json
from pathlib import Path

import pytest

from pips_jax.evaluation.runner import SUMMARY_METRICS

TOOL = Path(__file__).resolve().parents[1] / "tools" / "ship_weights.py"
spec = importlib.util.spec_from_file_location("ship_weights", TOOL)
ship = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ship)


def _scores(value):
    return {k: value for k in SUMMARY_METRICS}


def _stage(steps, crop, seconds):
    return {"steps": steps, "training_config": {"crop": crop}, "training_time_s": seconds}


CARD = {
    "name": "tiny",
    "steps": 1700,
    "training_time_s": 300,
    "stages": [_stage(700, [128, 128], 100), _stage(1000, [256, 256], 200)],
    "iters": 4,
    "evaluation": {"model": _scores(0.1), "model_6_iterations": _scores(0.08)},
    "held_out_curve": {"points": [{"step": 700, **_scores(0.1)}, {"step": 1700, **_scores(0.2)}]},
}
CONFIG = {"num_steps": 500, "seed": 7, "crop": [256, 256]}
RECORDS = [
    {"type": "train", "step": 250, "elapsed": 40.0},
    {
        "type": "eval",
        "step": 250,
        **_scores(0.123456),
        **{f"zero_motion_{k}": 0.01 for k in SUMMARY_METRICS},
    },
    {"type": "train", "step": 500, "elapsed": 80.4},
]


def _report(value, iters, seed=1000, resolution=(256, 256), baseline=0.05):
    """A report as ``pips-jax eval --json`` writes it (after a JSON round trip)."""
    report = {
        "dataset": f"generated: 16 clips, seed {seed}",
        "query_mode": "first",
        "input_resolution": list(resolution),
        "eval_resolution": [256, 256],
        "weights": f"runs/x (pips-jax train run, step 500); iterations per window: {iters}",
        "scores": {"pips": _scores(value), "zero_motion": _scores(baseline)},
        "iters": iters,
        "precision": "float32",
    }
    return json.loads(json.dumps(report))


def test_next_card_appends_the_stage_and_counts_steps_over_all_stages():
    new = ship.next_card(CARD, CONFIG, RECORDS, "pips-jax train --seed 7")
    assert new["steps"] == 2200 and new["training_time_s"] == 100 + 200 + 80
    assert new["training_command"] == "pips-jax train --seed 7" and new["data_seed"] == 7
    stage = new["stages"][-1]
    assert len(new["stages"]) == 3 and stage["training_config"] is CONFIG
    assert (stage["steps"], stage["data_seed"], stage["training_time_s"]) == (500, 7, 80)
    assert stage["init_stage"] == 2
    assert new["iters"] == 4
    assert "evaluation" not in new  # the old weights' scores go
    curve = new["held_out_curve"]
    assert [p["step"] for p in curve["points"]] == [700, 1700, 1950]
    assert curve["points"][-1]["average_jaccard"] == 0.1235
    assert curve["zero_motion"] == _scores(0.01)
    assert CARD["stages"][-1]["steps"] == 1000 and len(CARD["stages"]) == 2  # not modified


def test_an_unfinished_run_is_refused():
    with pytest.raises(ValueError, match="expected a finished run of 600 steps, found the log"):
        ship.next_card(CARD, {**CONFIG, "num_steps": 600}, RECORDS, "cmd")


def test_the_benchmark_must_be_measured_with_the_cards_settings():
    settings = ship.card_settings({**CARD, "input_resolution": [384, 384]})
    assert (settings.iters, settings.clip_resolution) == (4, (384, 384))
    assert ship.card_settings({"name": "no choices"}).clip_resolution == (256, 256)
    report = _report(0.5, 4, resolution=(384, 384))
    assert ship.benchmark_scores(report, settings) == _scores(0.5)
    with pytest.raises(
        ValueError,
        match=r"^expected an evaluation with iters 4, found 6 \(run pips-jax eval with --iters 4\)$",
    ):
        ship.benchmark_scores(_report(0.5, 6, resolution=(384, 384)), settings)
    with pytest.raises(
        ValueError,
        match=r"^expected an evaluation with input_resolution 384x384, found 256x256 \(run "
        r"pips-jax eval with --input-resolution 384x384\)$",
    ):
        ship.benchmark_scores(_report(0.5, 4), settings)
    old = {k: v for k, v in report.items() if k != "iters"}  # from before reports had it
    with pytest.raises(ValueError, match="expected a pips-jax eval report with its 'iters'"):
        ship.benchmark_scores(old, settings)


def test_the_benchmark_and_its_variants_are_stored_with_their_settings():
    new = ship.next_card(CARD, CONFIG, RECORDS, "cmd")
    bench = _report(0.5, 4, baseline=0.0512345)
    also = (_report(0.456789, 6), _report(0.4, 4, resolution=(384, 384)))
    new = ship.with_benchmark(new, bench, also)
    assert new["evaluation"] == {
        "settings": {
            "dataset": "generated: 16 clips, seed 1000",
            "query_mode": "first",
            "iters": 4,
            "input_resolution": [256, 256],
            "eval_resolution": [256, 256],
        },
        "model": _scores(0.5),
        "zero_motion": _scores(0.0512),
        "model_6_iterations": _scores(0.4568),
        "model_input_384x384": _scores(0.4),
    }
    with pytest.raises(ValueError, match="expected --eval-also on the benchmark's"):
        ship.with_benchmark(new, bench, (_report(0.4, 6, seed=2000),))
    with pytest.raises(
        ValueError, match="changed, found iters 6 at 384x384$"
    ):  # both settings changed: which one the scores speak of is unclear
        ship.with_benchmark(new, bench, (_report(0.4, 6, resolution=(384, 384)),))


def test_validation_chooses_the_best_scoring_value_and_keeps_every_version():
    old = {
        **CARD,
        "iters_validation": [{"stage": 2, "dataset": "d", "4": _scores(0.5), "6": _scores(0.45)}],
    }
    new = ship.next_card(old, CONFIG, RECORDS, "cmd")
    val = [_report(0.55, 4, seed=2000), _report(0.6034, 6, seed=2000), _report(0.5, 8, seed=2000)]
    new = ship.choose_by_validation(new, "iters", val, _report(0.5, 4))
    assert new["iters"] == 6  # the best delta_avg
    assert new["iters_validation"] == [
        old["iters_validation"][0],
        {
            "stage": 3,
            "dataset": "generated: 16 clips, seed 2000",
            "input_resolution": [256, 256],
            "4": _scores(0.55),
            "6": _scores(0.6034),
            "8": _scores(0.5),
        },
    ]
    assert len(old["iters_validation"]) == 1 and old["iters"] == 4  # not modified

    # The resolution is then chosen with the card's new iteration count.
    val = [_report(0.6, 6, 2000, (448, 448)), _report(0.7012, 6, 2000, (384, 384))]
    chosen = ship.choose_by_validation(new, "input_resolution", val, _report(0.5, 6))
    assert chosen["input_resolution"] == [384, 384]
    assert chosen["input_resolution_validation"][-1] == {
        "stage": 3,
        "dataset": "generated: 16 clips, seed 2000",
        "iters": 6,
        "448x448": _scores(0.6),
        "384x384": _scores(0.7012),
    }
    with pytest.raises(ValueError, match="with the card's iters 6, found 4$"):
        ship.choose_by_validation(
            new, "input_resolution", [_report(0.6, 4, 2000, (448, 448)), *val], _report(0.5, 6)
        )


def test_validation_on_the_benchmark_mixed_clips_or_one_candidate_is_refused():
    new = ship.next_card(CARD, CONFIG, RECORDS, "cmd")
    bench = _report(0.5, 4)
    same = [_report(0.6, 4), _report(0.5, 6)]
    with pytest.raises(ValueError, match="expected validation clips other than the benchmark's"):
        ship.choose_by_validation(new, "iters", same, bench)
    mixed = [_report(0.6, 4, seed=2000), _report(0.5, 6, seed=3000)]
    with pytest.raises(ValueError, match="expected every validation report on the same clips"):
        ship.choose_by_validation(new, "iters", mixed, bench)
    with pytest.raises(ValueError, match="at least two iters values"):
        ship.choose_by_validation(new, "iters", [_report(0.6, 4, seed=2000)], bench)
    twice = [_report(0.6, 4, seed=2000), _report(0.5, 4, seed=2000)]
    with pytest.raises(ValueError, match="one validation report per iters, found two at 4"):
        ship.choose_by_validation(new, "iters", twice, bench)
    other_res = [_report(0.6, 4, 2000), _report(0.5, 6, 2000, (384, 384))]
    with pytest.raises(ValueError, match="with the card's input_resolution 256x256, found 384x384"):
        ship.choose_by_validation(new, "iters", other_res, bench)


def test_the_shipped_cards_choices_are_what_their_last_validation_decides():
    card = json.loads((ship.ASSETS / "pips-jax-small-synthetic.json").read_text())
    for choice in ("iters", "input_resolution"):
        entry = card[f"{choice}_validation"][-1]
        candidates = {k: v for k, v in entry.items() if isinstance(v, dict)}
        best = max(candidates, key=lambda k: candidates[k][ship.DECIDING])
        assert best == ship.name_of(choice, card[choice])


def test_the_curve_plot_is_written(tmp_path):
    new = ship.next_card(CARD, CONFIG, RECORDS, "cmd")
    out = tmp_path / "curve.png"
    ship.plot_curve(new, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["curve.png"]
