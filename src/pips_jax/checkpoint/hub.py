"""Finding, downloading and caching weights.

The released reference model (``model-000200000.pth``, 12/15/22) lives in the Hugging
Face repository ``aharley/pips``. :func:`download_reference` fetches it with
``huggingface_hub`` (which honours ``HF_ENDPOINT``, ``HF_HOME``/``HF_HUB_CACHE`` and
offline mode ``HF_HUB_OFFLINE=1``), converts it once with the safe reader and caches
the converted parameters in the pips-jax cache folder:

* ``$PIPS_JAX_CACHE`` if set, else ``$XDG_CACHE_HOME/pips-jax``, else
  ``~/.cache/pips-jax``;
* file ``pips-reference-stride4.safetensors``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pips_jax.config import ModelConfig
from pips_jax.errors import CheckpointError
from pips_jax.files import cache_dir

REPO_ID = "aharley/pips"
FILENAME = "model-000200000.pth"
REFERENCE_NAME = "pips-reference-stride4.safetensors"
REFERENCE_CONFIG = ModelConfig()  # the released model: S=8, stride 4

HOW_TO_GET_WEIGHTS = (
    "run `pips-jax download` (fetches aharley/pips model-000200000.pth from Hugging Face "
    "and converts it), or pass --checkpoint PATH with a .pth or converted .safetensors file"
)


def reference_path() -> Path:
    """Where the converted released weights are cached."""
    return cache_dir() / REFERENCE_NAME


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
