"""A small PIPs configuration for fast tests, and parameters that are not chaotic."""

import jax

from pips_jax import ModelConfig, Pips

SMALL = ModelConfig(
    S=8, stride=4, latent_dim=16, corr_levels=2, corr_radius=1, mixer_dim=32, mixer_depth=2,
    encoder_dims=(8, 12), encoder_stem_dim=8, embed_dim=8,
)  # fmt: skip


def damped_params(config: ModelConfig = SMALL, seed: int = 1) -> dict:
    """Random parameters with the mixer's sin/cos embedding inputs scaled by 0.01.

    As in the reference fixtures: undamped random weights (frequencies up to ~1000 rad
    per pixel) make the refinement loop chaotic, so float round-off between two
    equivalent programs would grow without bound.
    """
    params = Pips(config).init(jax.random.key(seed))
    start = config.latent_dim + config.corr_dim
    k = params["delta_block"]["input"]["kernel"]
    params["delta_block"]["input"]["kernel"] = k.at[start : start + 3 * config.embed_dim].multiply(
        0.01
    )
    return params
