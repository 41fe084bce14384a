"""Many videos in one run of the tracker: the list, the share of each worker and of
each process, which videos are finished already, and failures that skip one video.

Conventions are the tracker's (:mod:`pips_jax.tracker`): queries ``(t, x, y)`` with
``t`` an input frame index and ``(x, y)`` input pixels, origin at the centre of the
top-left pixel; tracks ``(N, T, 2)`` ``(x, y)`` input pixels; sizes ``(H, W)``.

The list
--------
Videos (files or folders of frames) are given as paths and/or in a list file
(:func:`read_video_list`: one path a line, blank lines and ``#`` comments ignored,
relative paths relative to the list file's folder); every path must exist before any
work starts. A video's outputs are named by its stem
(:func:`pips_jax.tracks_io.output_names`: ``clip.mp4`` and a folder ``clip/`` both
write ``clip_tracks.*``), so :func:`check_stems` refuses two inputs of one stem
(compared case-folded, as a case-insensitive file system would) before any work, on
the whole list, so that every worker and process agrees.

Who tracks what
---------------
Two levels of splitting, both by position in a list (:func:`pips_jax.runtime.share`:
every N-th from position I), so a rerun of the same command gives every worker and
process the same videos again:

1. **Workers** (``share=(I, N)``, the CLI's ``--shard I/N``): N independent commands
   (a SLURM array, N shells) that share nothing but the output folder. Worker I takes
   ``share(videos, I, N)``.
2. **The processes of one job** (JAX's distributed runtime, P processes,
   :func:`pips_jax.runtime.join`) split the worker's share ``W``:

   * with ``len(W) >= P`` ("split"): process p tracks ``share(W, p, P)`` alone on
     its local devices and writes those outputs itself;
   * with ``len(W) < P`` ("joint"): every process tracks every video of ``W``
     together, its points split over the devices of all processes
     (:func:`pips_jax.runtime.global_mesh`), and process ``k % P`` writes the outputs
     of the video at position ``k`` of ``W``. Every process reads the video itself,
     so every process must see the same files.

Each output is written by exactly one process, and counted in the summary by it.

Finished videos
---------------
A video is finished when the output folder holds exactly the outputs the run would
leave for it (:func:`is_finished`): every file it would write (npz, csv and, unless
there is no visualization, the visualization of the run's format) and none of those
it would remove (the other format's visualization, or any visualization for a run
without one). Outputs are put in place together and only whole
(:class:`pips_jax.files.StagedOutputs`), so an existing set is a complete one.
Finished videos are skipped unless ``overwrite``; the settings that made them are not
compared (a rerun with other settings needs ``overwrite``). In the joint mode the
process that writes a video decides, and the others follow it.

Failures
--------
With several videos in the list, a :class:`~pips_jax.errors.PipsError` while reading,
tracking or writing one video (a corrupt file, points outside its frames) fails that
video only: it is reported at once, nothing of it is written, and the others go on;
the summary counts it. With one video in the list the error is raised (the command's
bad input). In the joint mode the processes first agree that every one of them could
open the video. Ctrl-C (:class:`KeyboardInterrupt`, taken between frames and windows
through :mod:`pips_jax.interrupts`) stops the whole run; the outputs of the video in
progress are not left half-written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pips_jax import interrupts, runtime
from pips_jax.errors import InputError, PipsError
from pips_jax.files import StagedOutputs, atomic_write_bytes
from pips_jax.tracker import (
    FrameSelection,
    StreamedFrame,
    Tracker,
    VideoSource,
    check_queries,
    grid_queries,
    open_video,
)
from pips_jax.tracks_io import TRACK_FORMATS, TrackResult, output_names, save_track_file

#: Frame rate of the visualization of an input without one (a folder of frames
#: without ``fps``).
UNKNOWN_FPS_VIZ = 10.0
#: The mesh axis the tracker splits points over.
POINTS_AXIS = "points"
#: Failed videos the summary names before it says "and K more".
NAMED_FAILURES = 5


# ------------------------------------------------------------------- the list
def read_video_list(path: str | os.PathLike) -> list[Path]:
    """The videos of a list file: one path a line; blank lines and lines starting with
    ``#`` are ignored (so are spaces around a path); a relative path is relative to
    the list file's folder, ``~`` is the home folder.

    Raises:
        InputError: the file cannot be read or lists no video.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise InputError(f"video list {path}: cannot read ({reason})") from None
    videos = []
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        video = Path(entry).expanduser()
        videos.append(video if video.is_absolute() else path.parent / video)
    if not videos:
        raise InputError(
            f"video list {path}: no video; expected one path a line (# starts a comment)"
        )
    return videos


def gather_videos(
    videos: Sequence[str | os.PathLike], video_list: str | os.PathLike | None = None
) -> list[Path]:
    """The videos of a run: ``videos``, then those of ``video_list``
    (:func:`read_video_list`), in order.

    Raises:
        InputError: no video at all, or a path that does not exist.
    """
    given = [(Path(v), "") for v in videos]
    if video_list is not None:
        given += [(p, f" (listed in {video_list})") for p in read_video_list(video_list)]
    if not given:
        raise InputError("expected at least one video (a path, or --video-list FILE), found none")
    for path, where in given:
        if not path.exists():
            raise InputError(
                f"{path}{where}: no such file or folder; expected a video file or a folder "
                "of frames"
            )
    return [path for path, _ in given]


def check_stems(videos: Sequence[Path]) -> list[str]:
    """The stem of each video (its outputs' name), refusing two videos of one stem.

    Raises:
        InputError: naming both paths of the first clash.
    """
    stems = [Path(v).stem for v in videos]
    seen: dict[str, int] = {}
    for i, stem in enumerate(stems):
        key = stem.casefold()
        if key in seen:
            j = seen[key]
            same = stems[j] if stems[j] == stem else f"{stems[j]}_tracks.* and {stem}"
            note = "" if stems[j] == stem else " (one name on a case-insensitive file system)"
            raise InputError(
                f"{videos[j]} and {videos[i]} would both write {same}_tracks.*{note}; "
                "expected videos of distinct names (stems), found two of the same"
            )
        seen[key] = i
    return stems


def parse_share(text: str, what: str = "--shard") -> tuple[int, int]:
    """``"I/N"`` as ``(I, N)``: worker I of N, ``0 <= I < N``.

    Raises:
        InputError: not two integers, or out of range.
    """
    parts = text.split("/")
    try:
        index, count = (int(v) for v in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        index = count = None
    if index is None or count is None or not 0 <= index < count:
        raise InputError(
            f"{what}: expected I/N, worker I of N with 0 <= I < N (such as 0/4), found {text!r}"
        )
    return index, count


# ---------------------------------------------------------------- the options
@dataclasses.dataclass(frozen=True, eq=False)
class TrackOptions:
    """What is tracked in every video of a run, and what is written.

    Attributes:
        selection: the input frames tracked (the same for every video).
        fps: the input's frame rate, for inputs without one; None: each video's own.
        queries: ``(N, 3)`` ``(t, x, y)`` rows used for every video (``t`` an input
            frame index, ``(x, y)`` input pixels), or None for a grid.
        labels: a name per query row, for error messages.
        grid_size: ``K`` of the ``K x K`` grid when ``queries`` is None.
        grid_query_frame: the grid's input frame (None: the first tracked frame).
        backward: also track frames before each query frame.
        formats: the track files written, kinds of
            :data:`pips_jax.tracks_io.TRACK_FORMATS` (``npz``, ``csv``, ``tapvid``).
        viz_format: ``"mp4"`` or ``"gif"``, the visualization's format; None: none.
        trail: trail length of the visualization, in frames.
        stream: track forward as the video decodes, in constant memory
            (:func:`stream_video`); ``backward`` is then ignored.
    """

    selection: FrameSelection = FrameSelection()
    fps: float | None = None
    queries: np.ndarray | None = None
    labels: Sequence[str] | None = None
    grid_size: int = 10
    grid_query_frame: int | None = None
    backward: bool = True
    formats: tuple[str, ...] = ("npz", "csv")
    viz_format: str | None = "mp4"
    trail: int = 12
    stream: bool = False

    def __post_init__(self) -> None:
        unknown = [f for f in self.formats if f not in TRACK_FORMATS]
        if unknown or not self.formats:
            raise InputError(
                f"track formats: expected some of {', '.join(TRACK_FORMATS)}, found "
                f"{', '.join(self.formats) or 'none'}"
            )

    def output_names(self, stem: str) -> list[str]:
        """The files this run writes for a video named ``stem``, in writing order."""
        names = output_names(stem)
        kinds = [*self.formats] + ([self.viz_format] if self.viz_format else [])
        return [names[k] for k in kinds]


def is_finished(out: str | os.PathLike, stem: str, options: TrackOptions) -> bool:
    """Whether the folder ``out`` holds exactly the outputs a run with ``options``
    leaves for the video ``stem``: all it writes (:meth:`TrackOptions.output_names`),
    none of the earlier kinds it removes."""
    out = Path(out)
    written = options.output_names(stem)
    removed = [n for n in output_names(stem).values() if n not in written]
    return all((out / n).is_file() for n in written) and not any(
        (out / n).exists() for n in removed
    )


# ------------------------------------------------------------------- the plan
@dataclasses.dataclass(frozen=True)
class Video:
    """A video of the list.

    Attributes:
        position: its position in the whole list (from 0).
        path: the file or folder of frames.
        stem: the name of its outputs.
    """

    position: int
    path: Path
    stem: str


@dataclasses.dataclass(frozen=True)
class Task:
    """A video this process takes part in.

    Attributes:
        video: the video.
        joint: tracked by every process of the job together (on the global mesh);
            False: by this process alone, on its local devices.
        writes: this process writes its outputs (and reports it).
        skip: finished already (:func:`is_finished`); nothing to do.
    """

    video: Video
    joint: bool
    writes: bool
    skip: bool


@dataclasses.dataclass
class Plan:
    """This process's part of a run (:func:`plan_work`).

    Attributes:
        videos: the whole list.
        tasks: the videos this process takes part in, in order.
        out: the output folder.
        options: what is tracked and written.
        share: ``(I, N)``: this worker's share of the list.
    """

    videos: list[Video]
    tasks: list[Task]
    out: Path
    options: TrackOptions
    share: tuple[int, int] = (0, 1)

    @property
    def single(self) -> bool:
        """Whether the list has one video (its errors are raised, not counted)."""
        return len(self.videos) == 1

    @property
    def has_work(self) -> bool:
        """Whether any task is to be tracked (a tracker is needed)."""
        return any(not t.skip for t in self.tasks)


def plan_work(
    videos: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    options: TrackOptions,
    *,
    share: tuple[int, int] = (0, 1),
    overwrite: bool = False,
    job: runtime.Job | None = None,
) -> Plan:
    """Decides which videos this process tracks and writes (module docstring: "Who
    tracks what", "Finished videos"). Every process of a job must call it: in a job
    of several processes it checks that all were given the same list and, in the
    joint mode, gathers the writers' decisions on finished videos.

    Args:
        videos: the whole list (paths that exist, :func:`gather_videos`).
        out: the output folder.
        options: what is tracked and written.
        share: ``(I, N)``: worker I of N independent workers.
        overwrite: track finished videos again.
        job: the processes of this command (default :func:`pips_jax.runtime.current_job`).

    Raises:
        InputError: two videos of one stem, a share out of range, or processes given
            different lists.
    """
    job = job or runtime.current_job()
    paths = [Path(v) for v in videos]
    stems = check_stems(paths)
    entries = [Video(i, p, s) for i, (p, s) in enumerate(zip(paths, stems, strict=True))]
    if job.process_count > 1:
        runtime.check_same_settings({"videos": [str(p) for p in paths]}, "video lists")
    mine = runtime.share(entries, *share)
    count, me = job.process_count, job.process_index

    def finished(video: Video) -> bool:
        return not overwrite and is_finished(out, video.stem, options)

    if len(mine) >= count:
        tasks = [Task(v, False, True, finished(v)) for v in runtime.share(mine, me, count)]
    else:
        writes = [k % count == me for k in range(len(mine))]
        decided = [finished(v) if w else None for v, w in zip(mine, writes, strict=True)]
        every = runtime.allgather_json(decided) if count > 1 else [decided]
        skips = [bool(every[k % count][k]) for k in range(len(mine))]
        tasks = [Task(v, True, w, s) for v, w, s in zip(mine, writes, skips, strict=True)]
    return Plan(entries, tasks, Path(out), options, share)


# ------------------------------------------------------------ records, summary
@dataclasses.dataclass
class Record:
    """What became of one video (JSON-serialisable, gathered across processes).

    Attributes:
        position: the video's position in the whole list.
        video: its path, as given.
        status: ``"done"``, ``"skipped"`` (finished already) or ``"failed"``.
        seconds: time spent on it (reading, tracking, writing).
        message: why it failed (one line).
        written: the outputs written, in writing order.
        points, frames: the number of points and of tracked frames.
        size: ``(H, W)`` of the input; resolution: ``(H, W)`` the model worked at.
        process: the process that wrote it.
    """

    position: int
    video: str
    status: str
    seconds: float = 0.0
    message: str = ""
    written: list[str] = dataclasses.field(default_factory=list)
    points: int = 0
    frames: int = 0
    size: tuple[int, int] = (0, 0)
    resolution: tuple[int, int] = (0, 0)
    process: int = 0

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Record:
        value = dict(value)
        value["size"] = tuple(value["size"])
        value["resolution"] = tuple(value["resolution"])
        return cls(**value)

    def describe(self, seconds: float | None = None) -> str:
        """What was tracked, as the CLI prints it: ``"9 points through 12 frames
        (input 32x48, working resolution 32x48, HxW) in 1.2 s"`` (``seconds``: the
        time to give, default :attr:`seconds`)."""
        (h, w), (rh, rw) = self.size, self.resolution
        return (
            f"{self.points} points through {self.frames} frames (input {h}x{w}, working "
            f"resolution {rh}x{rw}, HxW) in {self.seconds if seconds is None else seconds:.1f} s"
        )


@dataclasses.dataclass
class Summary:
    """The records of a run (of one process, or gathered from all).

    Attributes:
        records: one per video, in list order.
        seconds: wall time of the run (the longest process's).
    """

    records: list[Record]
    seconds: float

    def _with(self, status: str) -> list[Record]:
        return [r for r in self.records if r.status == status]

    @property
    def done(self) -> list[Record]:
        return self._with("done")

    @property
    def skipped(self) -> list[Record]:
        return self._with("skipped")

    @property
    def failed(self) -> list[Record]:
        return self._with("failed")

    def to_json(self) -> dict[str, Any]:
        return {"records": [dataclasses.asdict(r) for r in self.records], "seconds": self.seconds}

    @classmethod
    def gather(cls, local: Summary) -> Summary:
        """Every process's summary merged (a collective: every process of the job
        calls it and gets the job's summary)."""
        every = runtime.allgather_json(local.to_json())
        records = [Record.from_json(r) for s in every for r in s["records"]]
        records.sort(key=lambda r: r.position)
        return cls(records, max(s["seconds"] for s in every))

    def describe(self, job: str = "") -> str:
        """The run in a line: ``"2 of 4 videos tracked, 1 skipped (finished), 1 failed
        (bad.mp4) in 7.0 s on 2 processes, 2 devices; 2.9 s a tracked video"``
        (``job``: :meth:`pips_jax.runtime.Job.describe`; failed videos named up to
        :data:`NAMED_FAILURES`)."""
        done, skipped, failed = self.done, self.skipped, self.failed
        n = len(self.records)
        text = f"{len(done)} of {n} video{'s' if n != 1 else ''} tracked, "
        text += f"{len(skipped)} skipped (finished), {len(failed)} failed"
        if failed:
            names = [Path(r.video).name for r in failed[:NAMED_FAILURES]]
            more = len(failed) - len(names)
            text += f" ({', '.join(names)}{f' and {more} more' if more else ''})"
        text += f" in {self.seconds:.1f} s"
        if job:
            text += f" {job}"
        if done:
            text += f"; {sum(r.seconds for r in done) / len(done):.1f} s a tracked video"
        return text


# -------------------------------------------------------------------- the run
def open_task_video(path: Path, options: TrackOptions) -> VideoSource:
    """The video at ``path`` with the run's frame selection and frame rate."""
    source = open_video(path, options.selection)
    if options.fps is not None:
        source.fps = options.fps
    return source


def track_video(tracker: Tracker, source: VideoSource, options: TrackOptions) -> TrackResult:
    """The run's queries (or grid) tracked through ``source``."""
    return tracker.track(
        source,
        queries=options.queries,
        grid_size=None if options.queries is not None else options.grid_size,
        grid_query_frame=options.grid_query_frame,
        backward=options.backward,
        labels=options.labels,
    )


def write_outputs(
    out: str | os.PathLike,
    stem: str,
    source: VideoSource,
    result: TrackResult,
    options: TrackOptions,
) -> list[Path]:
    """Writes a video's outputs (:meth:`TrackOptions.output_names`) into ``out``, all
    together or none (:class:`pips_jax.files.StagedOutputs`); earlier outputs of the
    same stem that the run does not write (the other visualization format) go."""
    names = output_names(stem)
    with StagedOutputs(out, replaces=names.values()) as staged:
        for kind in options.formats:
            save_track_file(kind, staged.path(names[kind]), result, stem)
        if options.viz_format:
            from pips_jax.viz import save_visualization

            frames = source.frames()
            try:  # the decoder is closed at once when interrupted
                save_visualization(
                    staged.path(names[options.viz_format]),
                    frames,
                    result.tracks,
                    result.visibility,
                    fps=_viz_fps(source),
                    trail=options.trail,
                    frame_labels=[_frame_label(i) for i in result.frame_indices],
                )
            finally:
                frames.close()
    return staged.written


def _viz_fps(source: VideoSource) -> float:
    """The visualization's frame rate: the input's over the frame step (or
    :data:`UNKNOWN_FPS_VIZ` for an input without one)."""
    return source.fps / source.selection.step if source.fps else UNKNOWN_FPS_VIZ


def _frame_label(index: int) -> str:
    """The text in a visualization frame's corner: its input frame index."""
    return f"frame {index}"


def _queries(source: VideoSource, options: TrackOptions) -> np.ndarray:
    """The run's queries (or grid) on ``source``, checked: ``(N, 3)`` ``(t, x, y)``
    with ``t`` an input frame index."""
    sel = source.selection
    if options.queries is not None:
        queries, labels = options.queries, options.labels
    else:
        t0 = sel.start if options.grid_query_frame is None else options.grid_query_frame
        queries, labels = grid_queries(source.size, options.grid_size, t0), None
    return check_queries(queries, source.num_frames, source.size, sel, labels)


def stream_video(
    tracker: Tracker,
    source: VideoSource,
    options: TrackOptions,
    out: str | os.PathLike,
    stem: str,
    writes: bool = True,
) -> tuple[TrackResult, list[Path]]:
    """Tracks forward through ``source`` as it decodes (:meth:`Tracker.stream`), holding
    the features of about one window whatever the video's length, and writes the
    outputs: the visualization frame by frame as frames become final, the track files
    (``(N, T)`` in memory, no features) when the video ends. Frames before a query's
    frame have no position (NaN, not visible): a stream cannot go backward.

    Stopped by Ctrl-C, the outputs of the frames final so far are put in place, valid
    and shorter, with ``<stem>_interrupted.txt`` beside them (so the video is not
    finished for a rerun, which tracks it whole), then :class:`KeyboardInterrupt` is
    raised. Any other failure leaves nothing.

    Returns:
        The :class:`TrackResult` and the paths written (none if not ``writes``).
    """
    from pips_jax.video import write_video
    from pips_jax.viz import TrailDrawer, label_frame, point_colors

    sel = source.selection
    queries = _queries(source, options)
    positions = queries.copy()
    positions[:, 0] = sel.position(queries[:, 0])  # stream frame indices
    viz = options.viz_format if writes else None
    finished: list[StreamedFrame] = []
    interrupted = False

    def final_frames() -> Iterator[StreamedFrame]:
        nonlocal interrupted
        frames = source.frames()
        try:
            for frame in tracker.stream(frames, positions, keep_frames=viz is not None):
                finished.append(frame._replace(frame=None))
                interrupts.check()
                yield frame
        except KeyboardInterrupt:
            if not finished:
                raise
            interrupted = True  # end the outputs here, whole
        finally:
            frames.close()

    names = output_names(stem)
    staged = StagedOutputs(out, replaces=names.values()) if writes else None
    with staged or contextlib.nullcontext():
        if viz:
            drawer = TrailDrawer(point_colors(len(queries)), options.trail)
            drawn = (
                label_frame(
                    drawer.draw(f.frame, f.positions, f.visibility),
                    _frame_label(sel.start + sel.step * f.t),
                )
                for f in final_frames()
            )
            write_video(staged.path(names[viz]), drawn, _viz_fps(source))
        else:
            for _ in final_frames():
                pass
        result = TrackResult(
            tracks=np.stack([f.positions for f in finished], axis=1),
            visibility=np.stack([f.visibility for f in finished], axis=1),
            confidence=np.stack([f.confidence for f in finished], axis=1),
            queries=queries,
            fps=float(source.fps),
            size=source.size,
            resolution=tracker.working_resolution(source.size),
            frame_indices=sel.indices(len(finished)),
            has_visibility=tracker.has_visibility,
        )
        if staged is not None:
            for kind in options.formats:
                save_track_file(kind, staged.path(names[kind]), result, stem)
            if interrupted:
                last = int(result.frame_indices[-1])
                note = (
                    f"pips-jax track --stream was interrupted: these outputs hold the "
                    f"{result.num_frames} frames final by then (input frames "
                    f"{int(result.frame_indices[0])}..{last}); rerun to track the video whole\n"
                )
                atomic_write_bytes(staged.path(names["interrupted"]), note.encode())
    if interrupted:
        raise KeyboardInterrupt
    return result, [] if staged is None else staged.written


def _message(error: PipsError, video: Video) -> str:
    """The error's line without a leading ``"<video path>: "`` (the report names the
    video already)."""
    text, prefix = str(error), f"{video.path}: "
    return text[len(prefix) :] if text.startswith(prefix) else text


def _agree_opened(error: PipsError | None, video: Video) -> str | None:
    """In the joint mode (every process calls it): the first message of a process
    that could not open the video, with its number if it is another process; None if
    every process opened it."""
    message = None if error is None else _message(error, video)
    return runtime.first_message(message, own=runtime.current_job().process_index)


def _run_task(task: Task, tracker_for: Callable[[bool], Tracker], plan: Plan) -> Record:
    """Tracks one video and writes its outputs if this process writes them; returns
    its record. A :class:`PipsError` fails the video (raised instead with one video
    in the list)."""
    video, options = task.video, plan.options
    start = time.perf_counter()
    me = runtime.current_job().process_index
    record = Record(video.position, str(video.path), "failed", process=me)
    source = error = None
    try:
        source = open_task_video(video.path, options)
    except PipsError as e:
        if plan.single and not task.joint:
            raise
        error = e
    if task.joint:
        message = _agree_opened(error, video)
        if message is not None and plan.single:
            raise error if error is not None else InputError(message)
    else:
        message = None if error is None else _message(error, video)
    if message is not None:
        record.message = message
        record.seconds = time.perf_counter() - start
        return record
    assert source is not None
    try:
        if options.stream:
            result, written = stream_video(
                tracker_for(task.joint), source, options, plan.out, video.stem, task.writes
            )
            record.written = [str(p) for p in written]
        else:
            result = track_video(tracker_for(task.joint), source, options)
            if task.writes:
                record.written = [
                    str(p) for p in write_outputs(plan.out, video.stem, source, result, options)
                ]
    except PipsError as e:
        if plan.single:
            raise
        record.message = _message(e, video)
        record.seconds = time.perf_counter() - start
        return record
    record.status = "done"
    record.points, record.frames = result.num_points, result.num_frames
    record.size, record.resolution = tuple(result.size), tuple(result.resolution)
    record.seconds = time.perf_counter() - start
    return record


def track_videos(
    plan: Plan,
    make_tracker: Callable[[Any], Tracker] | None,
    *,
    progress: bool = False,
    on_record: Callable[[Record], None] | None = None,
) -> Summary:
    """Runs this process's part of ``plan`` and returns the job's summary.

    Every process of a job must call it (the joint videos and the summary are
    collectives).

    Args:
        plan: from :func:`plan_work`.
        make_tracker: called at most once per mode, with None (this process's devices,
            the tracker's default mesh) or the global mesh
            (:func:`pips_jax.runtime.global_mesh` over :data:`POINTS_AXIS`); may be
            None when ``plan.has_work`` is False.
        progress: a progress bar over the videos (stderr; with several videos).
        on_record: called with each record this process writes (done, skipped or
            failed), as it comes; what it prints does not break the progress bar.

    Returns:
        The :class:`Summary` of every process's records (each video once).

    Raises:
        PipsError: with one video in the list, what failed it.
        KeyboardInterrupt: Ctrl-C (the video in progress leaves nothing written).
    """
    from tqdm.auto import tqdm

    start = time.perf_counter()
    trackers: dict[bool, Tracker] = {}

    def tracker_for(joint: bool) -> Tracker:
        if joint not in trackers:
            if make_tracker is None:
                raise RuntimeError("track_videos: a video to track and no make_tracker")
            trackers[joint] = make_tracker(runtime.global_mesh(POINTS_AXIS) if joint else None)
        return trackers[joint]

    records: list[Record] = []
    bar = tqdm(
        total=len(plan.tasks),
        desc="videos",
        unit="video",
        disable=not progress or plan.single,
        dynamic_ncols=True,
        file=sys.stderr,
    )
    try:
        for task in plan.tasks:
            interrupts.check()
            bar.set_postfix_str(task.video.path.name, refresh=True)
            if task.skip:
                record = Record(
                    task.video.position,
                    str(task.video.path),
                    "skipped",
                    process=runtime.current_job().process_index,
                )
            else:
                record = _run_task(task, tracker_for, plan)
            if task.writes:
                records.append(record)
                if on_record is not None:
                    with tqdm.external_write_mode(file=sys.stderr):
                        on_record(record)
            bar.update(1)
    finally:
        bar.close()
    return Summary.gather(Summary(records, time.perf_counter() - start))
