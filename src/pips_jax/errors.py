"""Exceptions raised by pips_jax for bad input.

Every error a user can cause (a wrong shape, a corrupt checkpoint, a checkpoint for
another model) is a :class:`PipsError`; the command line prints its message on one
line and exits with a non-zero code.
"""


class PipsError(ValueError):
    """Base class for errors caused by bad input to pips_jax."""


class CheckpointError(PipsError):
    """A checkpoint file is unreadable, unsafe, truncated or does not fit the model."""


class InputError(PipsError):
    """Frames or points do not have the shape, dtype or convention that is expected."""


class PipsWarning(UserWarning):
    """Something pips_jax did with the input that the user should know about (a video
    whose container announces more frames than decode, a working resolution that
    stretches the frames); the command line prints each one on one line."""
