"""``pips-jax track``: track points (a grid or a points file) through a video file or
a folder of frames, and write the tracks (npz, csv) and a visualization."""

from __future__ import annotations

import argparse
import sys
import time

from pips_jax.cli.args import (
    add_output_args,
    add_run_args,
    int_at_least,
    positive_float,
    resolution,
)

#: Frame rate of the visualization of an input without one (a folder of frames
#: without --fps).
UNKNOWN_FPS_VIZ = 10.0

_frame_index = int_at_least(0, "a frame index")
_positive_int = int_at_least(1, "an integer")


def add_parser(sub) -> None:
    p = sub.add_parser(
        "track",
        help="track points through a video and write tracks + a visualization",
        description=(
            "Track points through a whole video (a file or a folder of frames). Queries are "
            "a grid (--grid K) or a CSV points file with header t,x,y (input pixels, t a "
            "frame index). Writes <name>_tracks.npz, <name>_tracks.csv and a video with "
            "trails into --out."
        ),
    )
    p.add_argument("video", help="video file (mp4, avi, webm, mov, ...) or folder of frames")
    q = p.add_mutually_exclusive_group()
    q.add_argument(
        "--grid", type=int, default=10, metavar="K", help="track a KxK grid (default %(default)s)"
    )
    q.add_argument(
        "--points",
        metavar="FILE.csv",
        help="CSV with header t,x,y (t an input frame index, x,y input pixels)",
    )
    p.add_argument(
        "--query-frame",
        type=int,
        default=None,
        metavar="T",
        help="input frame of the grid (default: the first tracked frame)",
    )
    g = p.add_argument_group(
        "part of the video (frame indices everywhere, outputs included, are the input's)"
    )
    g.add_argument(
        "--start",
        type=_frame_index,
        default=0,
        metavar="T0",
        help="first frame (default %(default)s)",
    )
    g.add_argument(
        "--stop",
        type=_frame_index,
        default=None,
        metavar="T1",
        help="stop before this frame (default: the end)",
    )
    g.add_argument(
        "--step",
        type=_positive_int,
        default=1,
        metavar="K",
        help="every K-th frame (default %(default)s)",
    )
    g.add_argument(
        "--fps",
        type=positive_float,
        default=None,
        help="frame rate of the input (a folder of frames has none; default: the video's)",
    )
    add_run_args(p)
    add_output_args(p, "pips_out", "mp4")
    p.add_argument(
        "--resolution",
        type=resolution,
        default=None,
        metavar="HxW",
        help=(
            "working resolution (default: the input's aspect ratio at about 360x640's "
            "pixel count, each side a multiple of the stride)"
        ),
    )
    p.add_argument(
        "--max-points-per-batch",
        type=int,
        default=1024,
        metavar="N",
        help="points per compiled chunk (default %(default)s)",
    )
    p.add_argument(
        "--no-backward", action="store_true", help="do not track frames before the query frame"
    )
    p.add_argument(
        "--trail",
        type=int,
        default=12,
        metavar="K",
        help="trail length in frames (default %(default)s)",
    )
    p.add_argument("--no-viz", action="store_true", help="write tracks only")
    p.set_defaults(func=run, defer_interrupt=True)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pips_jax.errors import InputError
    from pips_jax.files import StagedOutputs, check_output_dir
    from pips_jax.inference import InferenceSettings
    from pips_jax.tracker import FrameSelection, Tracker, open_video
    from pips_jax.tracks_io import output_names, read_points_csv, save_csv, save_npz
    from pips_jax.weights import load_weights

    t0 = time.perf_counter()
    check_output_dir(args.out)
    selection = FrameSelection(args.start, args.stop, args.step)
    source = open_video(args.video, selection)
    if args.fps is not None:
        source.fps = args.fps
    queries = labels = None
    if args.points:
        queries, labels = read_points_csv(args.points)
        if args.query_frame is not None:
            raise InputError("--query-frame applies to --grid; a points file gives t per point")
    weights = load_weights(args.checkpoint)
    settings = InferenceSettings.resolve(
        weights.card, iters=args.iters, video_resolution=args.resolution, precision=args.precision
    )
    print(f"weights: {settings.describe(weights.description)}", file=sys.stderr)
    tracker = Tracker.from_settings(
        weights.params,
        weights.config,
        settings,
        max_points_per_batch=args.max_points_per_batch,
        progress=not args.quiet,
    )
    result = tracker.track(
        source,
        queries=queries,
        grid_size=None if queries is not None else args.grid,
        grid_query_frame=args.query_frame,
        backward=not args.no_backward,
        labels=labels,
    )
    stem = Path(args.video).stem
    names = output_names(stem)
    with StagedOutputs(args.out, replaces=names.values()) as out:
        save_npz(out.path(names["npz"]), result)
        save_csv(out.path(names["csv"]), result)
        if not args.no_viz:
            from pips_jax.viz import save_visualization

            fps = source.fps / selection.step if source.fps else UNKNOWN_FPS_VIZ
            frames = source.frames()
            try:  # the decoder is closed at once when interrupted
                save_visualization(
                    out.path(names[args.viz_format]),
                    frames,
                    result.tracks,
                    result.visibility,
                    fps=fps,
                    trail=args.trail,
                    frame_labels=[f"frame {i}" for i in result.frame_indices],
                )
            finally:
                frames.close()
    (h, w), (rh, rw) = result.size, result.resolution
    print(
        f"tracked {result.num_points} points through {result.num_frames} frames "
        f"(input {h}x{w}, working resolution {rh}x{rw}, HxW) "
        f"in {time.perf_counter() - t0:.1f} s -> {', '.join(str(p) for p in out.written)}"
    )
    return 0
