"""The XLA:CPU flag the ``pips-jax`` program adds before JAX starts, and the jaxlib
versions it is passed to (XLA aborts the process on a flag it does not know)."""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import MutableMapping

#: XLA:CPU flag keeping convolutions off YNNPACK, whose gradient convolutions are
#: several times slower than XLA's own (measured on jaxlib 0.10 on x86:
#: ``benchmarks/README.md``).
CPU_CONV_FLAG = "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"
#: jaxlib versions ``[low, high)`` the flag was measured on. XLA aborts the process on
#: a flag it does not know, so it is not passed to any other version.
CPU_CONV_FLAG_JAXLIB = ((0, 10), (0, 11))


def add_cpu_conv_flag(environ: MutableMapping[str, str] = os.environ) -> bool:
    """Appends :data:`CPU_CONV_FLAG` to ``XLA_FLAGS`` in ``environ`` for the jaxlib
    versions of :data:`CPU_CONV_FLAG_JAXLIB`, unless ``XLA_FLAGS`` already sets YNN
    fusion types (the user's choice wins). Takes effect if JAX's backend has not
    started yet. Returns whether the flag was added."""
    flags = environ.get("XLA_FLAGS", "")
    if "ynn_fusion_type" in flags:
        return False
    try:
        version = tuple(int(p) for p in importlib.metadata.version("jaxlib").split(".")[:2])
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return False
    low, high = CPU_CONV_FLAG_JAXLIB
    if not low <= version < high:
        return False
    environ["XLA_FLAGS"] = f"{flags} {CPU_CONV_FLAG}".strip()
    return True
