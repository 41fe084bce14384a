"""Finding, downloading and caching weights.

The released reference model (``model-000200000.pth``, 12/15/22) lives in the Hugging
Face repository ``aharley/pips``. :func:`download_reference` fetches it with
``huggingface_hub`` (which honours ``HF_ENDPOINT``, ``HF_HOME``/``HF_HUB_CACHE`` and
offline mode ``HF_HUB_OFFLINE=1``), converts it once with the safe reader and caches
the converted parameters in the pips-jax cache folder:

* ``$PIPS_JAX_CACHE`` if set, else ``$XDG_CACHE_HOME/pips-jax``, else
  ``~/.cache/pips-jax``;
* file ``pips-reference-stride4.safetensors``.

The PIPs++ reference model (``reference_model/model-000200000.pth``) is published as a
``.tar.gz`` archive at the address the original's ``get_reference_model.sh`` uses
(:data:`PIPS2_URL`). :func:`download_pips2_reference` streams the archive to a
temporary file in the cache folder, reads that one member out of it without
extracting anything else (no paths are created from the archive's names, links and
oversized members are refused), converts it and caches ``pips2-reference.safetensors``
beside the PIPs weights.
"""

from __future__ import annotations

import http.client
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from pips_jax.config import ModelConfig
from pips_jax.errors import CheckpointError
from pips_jax.files import cache_dir

REPO_ID = "aharley/pips"
FILENAME = "model-000200000.pth"
REFERENCE_NAME = "pips-reference-stride4.safetensors"
REFERENCE_CONFIG = ModelConfig()  # the released model: S=8, stride 4

#: Where the original's ``get_reference_model.sh`` fetches PIPs++'s reference model
#: (``dl=1``: the file itself rather than Dropbox's page about it).
PIPS2_URL = (
    "https://www.dropbox.com/scl/fi/czdlt2zc2ji2b7zd0pvoe/reference_model.tar.gz"
    "?rlkey=56ebq4g5dk01kyq8kuismev14&dl=1"
)
#: The one member of the archive that is read.
PIPS2_MEMBER = "reference_model/model-000200000.pth"
PIPS2_REFERENCE_NAME = "pips2-reference.safetensors"
#: Size limits: the archive as downloaded and the checkpoint inside it (the model's
#: state_dict is 70 MB; the limits leave room for an optimizer state beside it).
PIPS2_MAX_ARCHIVE_BYTES = 2 << 30
PIPS2_MAX_MEMBER_BYTES = 1 << 30
#: Seconds a connection may stay silent before the download fails.
DOWNLOAD_TIMEOUT_S = 60.0

HOW_TO_GET_WEIGHTS = (
    "run `pips-jax download` (fetches aharley/pips model-000200000.pth from Hugging Face "
    "and converts it), or pass --checkpoint PATH with a .pth or converted .safetensors file"
)


def reference_path() -> Path:
    """Where the converted released weights are cached."""
    return cache_dir() / REFERENCE_NAME


def pips2_reference_path() -> Path:
    """Where the converted PIPs++ reference weights are cached."""
    return cache_dir() / PIPS2_REFERENCE_NAME


def _hf_cache() -> str:
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    home = os.environ.get("HF_HOME") or os.path.join(
        os.path.expanduser("~"), ".cache", "huggingface"
    )
    return os.path.join(home, "hub")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def download_reference(force: bool = False) -> Path:
    """Downloads, converts, verifies and caches the released reference weights.

    Args:
        force: download and convert again even if the converted file is cached.

    Returns:
        Path of the converted ``.safetensors`` file.

    Raises:
        CheckpointError: the download failed (with the reason) or the file does not
            convert.
    """
    from pips_jax.checkpoint.convert import convert_checkpoint

    out = reference_path()
    if out.is_file() and not force:
        return out
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - a dependency of the package
        raise CheckpointError(
            "huggingface_hub is not installed: pip install huggingface_hub"
        ) from None
    try:
        pth = hf_hub_download(
            REPO_ID,
            FILENAME,
            endpoint=os.environ.get("HF_ENDPOINT") or None,
            cache_dir=_hf_cache(),
            local_files_only=_offline(),
            force_download=force and not _offline(),
        )
    except Exception as e:  # network errors, 404s, offline cache misses ...
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(
            f"could not download {REPO_ID}/{FILENAME}"
            f"{' (offline mode, not in the Hugging Face cache)' if _offline() else ''}: {reason}"
        ) from None
    return convert_checkpoint(pth, out, REFERENCE_CONFIG)


def download_pips2_reference(
    url: str | None = None,
    force: bool = False,
    max_archive_bytes: int = PIPS2_MAX_ARCHIVE_BYTES,
    max_member_bytes: int = PIPS2_MAX_MEMBER_BYTES,
    progress: bool = False,
) -> Path:
    """Downloads the PIPs++ reference archive, reads its checkpoint, converts and caches it.

    Only the member :data:`PIPS2_MEMBER` is read, straight from the archive into a
    temporary file; nothing is extracted by name, so no entry of the archive can write
    anywhere. The downloaded archive and the extracted ``.pth`` live in a hidden
    temporary folder in the cache folder, removed whether the call succeeds or fails;
    the converted file is written atomically.

    Args:
        url: where to fetch the archive (default :data:`PIPS2_URL`; any ``http``,
            ``https`` or ``file`` address).
        force: download and convert again even if the converted file is cached.
        max_archive_bytes: the download fails once it exceeds this many bytes.
        max_member_bytes: the checkpoint inside may be at most this many bytes.
        progress: show a progress bar (tqdm, on stderr when it is a terminal).

    Returns:
        Path of the converted ``.safetensors`` file (family ``pips2`` in its metadata).

    Raises:
        CheckpointError: the download failed, the archive is not a readable
            ``.tar.gz``, lacks the checkpoint, holds it as a link or a path leaving the
            archive, exceeds a size limit, or the checkpoint does not convert.
    """
    from pips_jax.checkpoint.convert import convert_checkpoint

    out = pips2_reference_path()
    if out.is_file() and not force:
        return out
    url = url or PIPS2_URL
    folder = out.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CheckpointError(
            f"cache folder {folder} cannot be created: {e.strerror or e}"
        ) from None
    # A hidden working folder in the cache: the .pth keeps its own name (the converted
    # file's metadata records it as the source) and everything goes with the folder.
    work = Path(tempfile.mkdtemp(prefix=".pips2-download-", dir=folder))
    try:
        archive = work / "reference_model.tar.gz"
        pth = work / PIPS2_MEMBER.rsplit("/", 1)[-1]
        _fetch(url, archive, max_archive_bytes, progress)
        _read_member(archive, PIPS2_MEMBER, pth, max_member_bytes, url)
        return convert_checkpoint(pth, out, family="pips2")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _fetch(url: str, dst: Path, max_bytes: int, progress: bool) -> None:
    """Streams ``url`` into ``dst``, failing past ``max_bytes``."""
    request = urllib.request.Request(url, headers={"User-Agent": "pips-jax"})
    try:
        response = urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S)
    except urllib.error.HTTPError as e:
        raise CheckpointError(f"could not download {url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        raise CheckpointError(f"could not download {url}: {reason}") from None
    with response:
        length = response.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        if total is not None and total > max_bytes:
            raise CheckpointError(
                f"{url}: the archive is {total} bytes; expected at most {max_bytes}"
            )
        from tqdm.auto import tqdm

        done = 0
        with (
            open(dst, "wb") as f,
            tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                desc="PIPs++ weights",
                disable=None if progress else True,  # None: on a terminal only
                leave=False,
            ) as bar,
        ):
            while True:
                try:
                    chunk = response.read(1 << 20)
                except (OSError, http.client.HTTPException) as e:
                    reason = str(e) or type(e).__name__
                    raise CheckpointError(f"could not download {url}: {reason}") from None
                if not chunk:
                    break
                done += len(chunk)
                if done > max_bytes:
                    raise CheckpointError(
                        f"{url}: the archive exceeds {max_bytes} bytes; expected at most that"
                    )
                f.write(chunk)
                bar.update(len(chunk))
        if total is not None and done != total:
            raise CheckpointError(
                f"could not download {url}: the connection closed after {done} of {total} bytes"
            )


def _read_member(archive: Path, name: str, dst: Path, max_bytes: int, url: str) -> None:
    """Copies the regular file ``name`` of the ``.tar.gz`` ``archive`` into ``dst``.

    The member is found by its exact name; entries are never extracted, so names such
    as ``../x`` or ``/etc/x`` cannot write anywhere. A member of that name that is a
    link, a folder or larger than ``max_bytes`` is refused.
    """
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            member = None
            for entry in tar:
                if _normalized(entry.name) == name:
                    member = entry
                    break
            if member is None:
                raise CheckpointError(
                    f"{url}: the archive holds no {name}; expected the PIPs++ reference "
                    "model archive"
                )
            if not member.isfile():
                raise CheckpointError(
                    f"{url}: {name} in the archive is a {_kind(member)}; expected a regular file"
                )
            if member.size > max_bytes:
                raise CheckpointError(
                    f"{url}: {name} is {member.size} bytes; expected at most {max_bytes}"
                )
            src = tar.extractfile(member)
            with src, open(dst, "wb") as f:
                shutil.copyfileobj(src, f, 1 << 20)
    except (tarfile.TarError, EOFError, OSError) as e:
        raise CheckpointError(
            f"{url}: not a readable .tar.gz archive ({type(e).__name__}: {e})"
        ) from None


def _normalized(name: str) -> str:
    """An archive name as a plain relative path (``./a//b`` -> ``a/b``)."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts) if not name.startswith("/") else "/" + "/".join(parts)


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return f"symbolic link to {member.linkname}"
    if member.islnk():
        return f"hard link to {member.linkname}"
    if member.isdir():
        return "folder"
    return "special file"
