import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Test helpers (reference.py) live beside the tests.
sys.path.insert(0, str(Path(__file__).parent))

# The pips-jax cache folder (converted weights, compiled programs) of the tests and of
# the commands they run: an empty one of their own, never the user's. Tests that need
# another set theirs.
os.environ["PIPS_JAX_CACHE"] = tempfile.mkdtemp(prefix="pips-jax-test-cache-")
atexit.register(shutil.rmtree, os.environ["PIPS_JAX_CACHE"], ignore_errors=True)
