"""The ``pips-jax`` command line: one module per command (``convert``, ``download``,
``track``, ``demo``, ``evaluate`` for ``eval``, ``benchmark``, ``train``), each a thin
shell over library functions, the options they share (:mod:`~pips_jax.cli.args`) and
the program itself (:mod:`~pips_jax.cli.main`; :func:`entry` is the console script).
"""

from pips_jax.cli.main import entry, main

__all__ = ["entry", "main"]
