"""The import rules of ``docs/ARCHITECTURE.md``, checked on the source: each module
imports only the modules below it, no module imports another's private name, and the
document names every module."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "pips_jax"

#: The units of docs/ARCHITECTURE.md from the bottom: a unit may import the units
#: before it and itself, never one after it.
ORDER = (
    "errors",
    "interrupts",
    "files",
    "config",
    "runtime",
    "ops",
    "model",
    "checkpoint.pth",
    "checkpoint.store",
    "checkpoint.convert",
    "checkpoint.hub",
    "checkpoint",
    "weights",
    "inference",
    "video",
    "viz",
    "tracks_io",
    "synthetic",
    "tracker",
    "collection",
    "api",
    "evaluation",
    "training",
    "demo",
    "benchmark",
    "export",
    "cli",
    "__main__",
)
#: Units that use only the layers up to the tracker.
BELOW_APPLICATIONS = {"demo": ORDER.index("tracker"), "export": ORDER.index("tracker")}
#: The one upward import the document states: reading a train run folder.
EXCEPTIONS = {("weights", "training.checkpoints")}


def _unit(module: str) -> str | None:
    """The unit of ``pips_jax.<module>``: a subpackage's module (``checkpoint.pth``)
    where the order lists it, else the subpackage or module."""
    parts = module.split(".")
    for k in (2, 1):
        name = ".".join(parts[:k])
        if name in ORDER:
            return name
    return None


def _modules() -> list[tuple[str, Path]]:
    """``(module, path)`` of every source file, ``module`` relative to ``pips_jax``."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join(parts), path))
    return found


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """``(module, names)`` of every ``pips_jax`` import in ``path`` (function bodies
    included), modules relative to ``pips_jax``; ``from pips_jax.x import y`` of a
    submodule ``y`` counts as importing ``x.y``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pips_jax"):
            base = node.module.removeprefix("pips_jax").lstrip(".")
            for alias in node.names:
                sub = f"{base}.{alias.name}".lstrip(".")
                is_module = (PACKAGE / sub.replace(".", "/")).with_suffix(".py").is_file() or (
                    PACKAGE / sub.replace(".", "/")
                ).is_dir()
                found.append((sub if is_module else base, [] if is_module else [alias.name]))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("pips_jax."):
                    found.append((alias.name.removeprefix("pips_jax."), []))
    return found


def test_every_module_imports_only_modules_below_it():
    upward = []
    for module, path in _modules():
        if not module:
            continue  # the package's __init__: the public names, lazily
        me = _unit(module)
        assert me is not None, f"{module} is in no layer of the ORDER (docs/ARCHITECTURE.md)"
        limit = BELOW_APPLICATIONS.get(me, ORDER.index(me))
        for imported, _ in _imports(path):
            unit = _unit(imported)
            assert unit is not None, f"{module} imports {imported}, which is in no layer"
            if unit != me and ORDER.index(unit) > limit and (me, imported) not in EXCEPTIONS:
                upward.append(f"{module} -> {imported}")
    assert upward == []


def test_the_stated_exception_is_still_needed():
    # docs/ARCHITECTURE.md names it; once it goes, the document and EXCEPTIONS must too
    imported = {m for m, _ in _imports(PACKAGE / "weights.py")}
    assert {m for me, m in EXCEPTIONS if me == "weights"} <= imported


def test_no_module_imports_a_private_name_of_another():
    private = [
        f"{module} imports {imported}.{name}"
        for module, path in _modules()
        for imported, names in _imports(path)
        for name in names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert private == []


def test_the_architecture_document_names_every_module():
    # as code: `tracker.py`, `synthetic/`, `cli/args.py`, `loop.py` (...)
    named = set(
        re.findall(
            r"`([A-Za-z0-9_/.]+?)(?:\.py|/)?`", (ROOT / "docs" / "ARCHITECTURE.md").read_text()
        )
    )
    named |= {n.rsplit("/", 1)[-1] for n in named}
    missing = []
    for module, path in _modules():
        name = path.stem if path.stem != "__init__" else path.parent.name
        if module and name != "__main__" and name not in named:
            missing.append(module)
    assert missing == []
