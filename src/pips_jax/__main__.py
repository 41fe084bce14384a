from pips_jax.cli import entry

entry()
