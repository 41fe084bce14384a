"""Files that are whole or absent: atomic writes, output folders, outputs replaced together.

Every writer of the package writes under a temporary name beside the final file
(:func:`temporary_name`: hidden, same extension) and renames it into place only once it
is complete, so a failure or Ctrl-C never leaves a half-written file.
:func:`atomic_write_bytes` does it for bytes, :func:`create_temporary` with
:func:`replaced_on_success` for writers that open the file themselves (videos, plots).

A command that writes several files (tracks, a CSV, a video) must also never leave a
mix of new and stale files, or an empty folder after a failure or Ctrl-C.
:class:`StagedOutputs` has every file written under a temporary name in the output
folder and, only once all are written, renames them into place and removes the earlier
outputs of the same run that this run did not write again. Until then the earlier
outputs are untouched; on failure the temporary files go, and so does any folder it
created.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterable, Iterator
from pathlib import Path

from pips_jax import interrupts
from pips_jax.errors import InputError


def temporary_name(path: Path) -> Path:
    """A new hidden name beside ``path`` that keeps its extension (writers that pick the
    format by extension see the right one): ``.<stem>.<8 hex digits>.tmp<suffix>``."""
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.tmp{path.suffix}")


def create_temporary(path: Path) -> Path:
    """Creates an empty file under a new :func:`temporary_name` of ``path``; returns it.

    The file is created with mode 0o666 less the umask, the permissions a plain
    ``open(path, "wb")`` gives (``mkstemp``'s would be owner-only, and reading the umask
    means setting it, which races with other threads' file creation).

    Raises:
        OSError: the folder is missing or not writable.
    """
    for _ in range(100):
        tmp = temporary_name(path)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
        except FileExistsError:
            continue
        os.close(fd)
        return tmp
    raise FileExistsError(  # pragma: no cover - 100 draws of 32 random bits all taken
        errno.EEXIST, "no free temporary name", str(path)
    )


@contextlib.contextmanager
def replaced_on_success(tmp: Path, path: Path) -> Iterator[None]:
    """Renames ``tmp`` to ``path`` when the block succeeds and removes ``tmp`` when it
    fails (Ctrl-C included), so ``path`` is either the new file whole or as it was."""
    try:
        yield
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def check_output_dir(path: str | os.PathLike) -> Path:
    """Checks, without creating anything, that ``path`` can become an output folder.

    Raises:
        InputError: ``path`` (or the nearest existing folder above it) is a file or is
            not writable.
    """
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError(f"output directory {out} is a file; expected a folder (or a new path)")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"output directory {out}: {parent} is a file; expected a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"output directory {out}: {parent} is not writable")
    return out


def cache_dir() -> Path:
    """The pips-jax cache folder: ``$PIPS_JAX_CACHE`` if set, else
    ``$XDG_CACHE_HOME/pips-jax``, else ``~/.cache/pips-jax`` (converted weights, compiled
    programs)."""
    if os.environ.get("PIPS_JAX_CACHE"):
        return Path(os.environ["PIPS_JAX_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "pips-jax"


def make_output_dir(path: str | os.PathLike) -> Path:
    """Creates the output folder ``path`` (and its parents) and returns it.

    Raises:
        InputError: ``path`` is a file, cannot be created or is not writable.
    """
    out = check_output_dir(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"output directory {out} cannot be created: {e.strerror or e}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"output directory {out} is not writable")
    return out


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` through a temporary file in the same folder
    (:func:`create_temporary`, so with the permissions a plain ``open(path, "wb")``
    gives), synced to disk before it is renamed into place."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"cannot write {path}: {folder} is a file, expected a folder")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = create_temporary(path)
    with replaced_on_success(tmp, path), open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class StagedOutputs:
    """Files written under temporary names and put in place together.

    Example::

        with StagedOutputs("out", replaces=["clip_tracks.mp4", "clip_tracks.gif"]) as out:
            save_npz(out.path("clip_tracks.npz"), result)
        # out/clip_tracks.npz is in place; a stale out/clip_tracks.mp4 or .gif is gone

    Args:
        folder: the output folder; created (with its parents) on entering, and removed
            again if the block fails and leaves it empty.
        replaces: names in ``folder`` of earlier outputs of the same kind: those the
            block does not write again are removed when it succeeds.

    Attributes:
        written: the final paths, once the block has succeeded.
    """

    def __init__(self, folder: str | os.PathLike, replaces: Iterable[str] = ()):
        self.folder = check_output_dir(folder)
        self.replaces = list(replaces)
        self.written: list[Path] = []
        self._staged: list[tuple[Path, Path]] = []
        self._created: list[Path] = []

    def __enter__(self) -> StagedOutputs:
        # The folders this creates, deepest first (the order they are removed in).
        missing = [p for p in (self.folder, *self.folder.parents) if not p.exists()]
        make_output_dir(self.folder)
        self._created = missing
        return self

    def path(self, name: str) -> Path:
        """Where to write the output ``name``: a temporary path in the folder with the
        same extension (writers that pick the format by extension see the right one)."""
        final = self.folder / name
        tmp = temporary_name(final)
        self._staged.append((tmp, final))
        return tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            with interrupts.held():
                self._staged = [(tmp, final) for tmp, final in self._staged if tmp.exists()]
                for tmp, final in self._staged:
                    os.replace(tmp, final)
                finals = {final.name for _, final in self._staged}
                for name in self.replaces:
                    if name not in finals:
                        (self.folder / name).unlink(missing_ok=True)
            self.written = [final for _, final in self._staged]
            return
        for tmp, _ in self._staged:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        self._remove_created()

    def _remove_created(self) -> None:
        for folder in self._created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only if empty
        self._created = []
