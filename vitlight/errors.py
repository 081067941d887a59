"""Errors a user can cause. The command line prints them as one line and exits 2."""


class VitlightError(Exception):
    """Base of all user-facing errors: the message names the bad value and what is valid."""

    exit_code = 2


class ConfigError(VitlightError, ValueError):
    """A configuration value that cannot work (unknown model, bad size, ...)."""


class DataError(VitlightError, ValueError):
    """Missing, unreadable or inconsistent data."""


class CheckpointError(VitlightError, ValueError):
    """A checkpoint that is missing, corrupt or does not fit the model."""
