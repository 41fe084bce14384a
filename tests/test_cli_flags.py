"""The XLA:CPU flag the CLI adds for the jaxlib versions it was measured on."""

import os
import subprocess
import sys

import pytest

from pips_jax.cli import xla_flags as cli


@pytest.fixture
def jaxlib_version(monkeypatch):
    def use(version):
        monkeypatch.setattr(cli.importlib.metadata, "version", lambda name: version)

    return use


def test_flag_added_for_the_measured_jaxlib(jaxlib_version):
    jaxlib_version("0.10.2")
    env = {}
    assert cli.add_cpu_conv_flag(env)
    assert env["XLA_FLAGS"] == cli.CPU_CONV_FLAG
    env = {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    assert cli.add_cpu_conv_flag(env)
    assert env["XLA_FLAGS"] == f"--xla_force_host_platform_device_count=2 {cli.CPU_CONV_FLAG}"


@pytest.mark.parametrize("version", ["0.9.9", "0.11.0", "0.4.30", "1.0.0", "dev"])
def test_flag_not_passed_to_other_jaxlibs(jaxlib_version, version):
    # An XLA flag unknown to the installed jaxlib would abort the process.
    jaxlib_version(version)
    env = {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}
    assert not cli.add_cpu_conv_flag(env)
    assert env == {"XLA_FLAGS": "--xla_cpu_enable_fast_math=false"}


def test_the_users_ynn_setting_wins(jaxlib_version):
    jaxlib_version("0.10.2")
    env = {"XLA_FLAGS": "--xla_cpu_experimental_ynn_fusion_type=+individual_dot"}
    assert not cli.add_cpu_conv_flag(env)
    assert env["XLA_FLAGS"] == "--xla_cpu_experimental_ynn_fusion_type=+individual_dot"


COMPILE_CONV_GRAD = """
import jax, jax.numpy as jnp
conv = lambda x, w: jax.lax.conv_general_dilated(
    x, w, (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NHWC", "HWIO", "NHWC"))
grad = jax.grad(lambda x, w: jnp.sum(conv(x, w) ** 2), argnums=(0, 1))
hlo = jax.jit(grad).lower(jnp.zeros((1, 8, 8, 4)), jnp.zeros((3, 3, 4, 4))).compile().as_text()
print("ynn" in hlo)
"""


def test_installed_jaxlib_accepts_the_flag_it_gets():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    added = cli.add_cpu_conv_flag(env)
    out = subprocess.run(
        [sys.executable, "-c", COMPILE_CONV_GRAD], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    if added:  # convolutions (and their gradients) stay off YNNPACK
        assert out.stdout.strip() == "False"
    else:
        assert "XLA_FLAGS" not in env
