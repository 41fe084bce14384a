"""``pips-jax track``: track points (a grid or a points file) through videos (files or
folders of frames) and write each one's tracks (npz, csv) and a visualization; many
videos, shares of workers and the processes of a job as :mod:`pips_jax.collection`
says."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from pips_jax.cli.args import (
    add_compile_cache_arg,
    add_job_args,
    add_output_args,
    add_run_args,
    int_at_least,
    load_run_weights,
    positive_float,
    resolution,
)

_frame_index = int_at_least(0, "a frame index")
_positive_int = int_at_least(1, "an integer")


def _track_formats(text: str) -> tuple[str, ...]:
    from pips_jax.tracks_io import TRACK_FORMATS

    kinds = tuple(dict.fromkeys(k.strip() for k in text.split(",") if k.strip()))
    unknown = [k for k in kinds if k not in TRACK_FORMATS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated list of {', '.join(TRACK_FORMATS)}, found {text!r}"
        )
    return kinds


def add_parser(sub) -> None:
    p = sub.add_parser(
        "track",
        help="track points through videos and write tracks + a visualization",
        description=(
            "Track points through whole videos (files or folders of frames). Queries are "
            "a grid (--grid K) or a CSV points file with header t,x,y (input pixels, t a "
            "frame index), the same for every video. Writes <name>_tracks.npz, "
            "<name>_tracks.csv (--format chooses; tapvid adds a TAP-Vid-style pickle) and a "
            "video with trails into --out for each video <name>.* "
            "(two videos of one name are refused). A video whose outputs are in --out, just "
            "as this command would leave them, is skipped (--overwrite tracks it again), so "
            "the same command resumes an interrupted run. With several videos, one that "
            "cannot be read or tracked is reported, skipped, and the command exits with "
            "code 1 at the end (with one video its error ends the command with code 2); "
            "bad input found before any work (missing paths, two videos of one name, a bad "
            "--shard) exits with code 2. The processes of a job (see 'many processes') "
            "split the videos, or track each video together when there are fewer videos "
            "than processes."
        ),
    )
    p.add_argument(
        "video",
        nargs="*",
        help=(
            "video files (mp4, avi, webm, mov, ...) or folders of frames, given together "
            "(all before or all after the options)"
        ),
    )
    p.add_argument(
        "--video-list",
        metavar="FILE",
        default=None,
        help=(
            "a text file of more videos: one path a line, blank lines and lines starting "
            "with # ignored, relative paths relative to the file's folder"
        ),
    )
    p.add_argument(
        "--shard",
        metavar="I/N",
        default=None,
        help=(
            "track only share I of N (every N-th video of the list from position I, 0 <= "
            "I < N): N independent commands (a SLURM array) write into one --out, and "
            "rerunning one resumes its share"
        ),
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="track videos whose outputs are in --out again (default: skip them)",
    )
    q = p.add_mutually_exclusive_group()
    q.add_argument(
        "--grid", type=int, default=10, metavar="K", help="track a KxK grid (default %(default)s)"
    )
    q.add_argument(
        "--points",
        metavar="FILE.csv",
        help=(
            "CSV with header t,x,y (t an input frame index, x,y input pixels), used for every video"
        ),
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
        "--format",
        type=_track_formats,
        default=("npz", "csv"),
        metavar="F[,F...]",
        help=(
            "track files to write, comma-separated: npz (<name>_tracks.npz), csv "
            "(<name>_tracks.csv), tapvid (<name>_tapvid.pkl, a TAP-Vid-style prediction "
            "pickle {name: {'points' (N, T, 2) (x, y) normalised to [0, 1] from the "
            "top-left corner, 'occluded' (N, T)}}) (default npz,csv)"
        ),
    )
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
        "--stream",
        action="store_true",
        help=(
            "track forward as the video decodes, holding the features of about one window "
            "(PIPs++: two) whatever its length: the visualization is written as frames "
            "become final (PIPs: at most 7 frames behind; PIPs++: --window to twice that), "
            "the track files at the end; frames "
            "before a query's frame have no position (a stream cannot go backward). "
            "Ctrl-C keeps the outputs of the frames final so far, with "
            "<name>_interrupted.txt beside them"
        ),
    )
    p.add_argument(
        "--trail",
        type=int,
        default=12,
        metavar="K",
        help="trail length in frames (default %(default)s)",
    )
    p.add_argument("--no-viz", action="store_true", help="write tracks only")
    add_compile_cache_arg(p)
    add_job_args(p)
    p.set_defaults(func=run, defer_interrupt=True)


def run(args: argparse.Namespace) -> int:
    from pips_jax import collection, runtime
    from pips_jax.errors import InputError
    from pips_jax.files import check_output_dir
    from pips_jax.tracker import FrameSelection, Tracker
    from pips_jax.tracks_io import read_points_csv

    t0 = time.perf_counter()
    check_output_dir(args.out)
    videos = collection.gather_videos(args.video, args.video_list)
    share = collection.parse_share(args.shard) if args.shard is not None else (0, 1)
    queries = labels = None
    if args.points:
        queries, labels = read_points_csv(args.points)
        if args.query_frame is not None:
            raise InputError("--query-frame applies to --grid; a points file gives t per point")
    options = collection.TrackOptions(
        selection=FrameSelection(args.start, args.stop, args.step),
        fps=args.fps,
        queries=queries,
        labels=labels,
        grid_size=args.grid,
        grid_query_frame=args.query_frame,
        backward=not (args.no_backward or args.stream),
        formats=args.format,
        viz_format=None if args.no_viz else args.viz_format,
        trail=args.trail,
        stream=args.stream,
    )
    job = runtime.current_job()
    plan = collection.plan_work(
        videos, args.out, options, share=share, overwrite=args.overwrite, job=job
    )
    make_tracker = None
    if plan.has_work:
        weights, settings = load_run_weights(args, video_resolution=args.resolution)

        def make_tracker(mesh: Any) -> Tracker:
            return Tracker.from_settings(
                weights.params,
                weights.config,
                settings,
                max_points_per_batch=args.max_points_per_batch,
                progress=not args.quiet,
                mesh=mesh,
            )

    def report(record: collection.Record) -> None:
        written = ", ".join(record.written)
        if record.status == "failed":
            print(f"pips-jax track: failed: {record.video}: {record.message}", file=sys.stderr)
        elif record.status == "skipped" and plan.single:
            print(
                f"skipped {record.video}: its outputs are all in {args.out} "
                "(--overwrite tracks it again)"
            )
        elif record.status == "done" and plan.single:
            took = record.describe(seconds=time.perf_counter() - t0)
            print(f"tracked {took} {job.describe()} -> {written}")
        elif record.status == "done":
            print(f"tracked {record.video}: {record.describe()} -> {written}")

    summary = collection.track_videos(plan, make_tracker, progress=not args.quiet, on_record=report)
    if job.is_main and (not plan.single or not plan.tasks):
        n = len(videos)
        where = f"share {share[0]}/{share[1]} of {n} video{'s' if n != 1 else ''}: "
        print(f"{where if share[1] > 1 else ''}{summary.describe(job.describe())} -> {args.out}")
    return 1 if summary.failed else 0
