"""Errors a user can cause. The command line prints them as one line and exits 2."""

from __future__ import annotations

import re
import sys
from typing import TypeVar

MAX_MESSAGE_LENGTH = 600


class VitlightError(Exception):
    """Base of all user-facing errors: the message names the bad value and what is valid."""

    exit_code = 2


class ConfigError(VitlightError, ValueError):
    """A configuration value that cannot work (unknown model, bad size, ...)."""


class DataError(VitlightError, ValueError):
    """Missing, unreadable or inconsistent data."""


class CheckpointError(VitlightError, ValueError):
    """A checkpoint that is missing, corrupt or does not fit the model."""


class WriteError(VitlightError, OSError):
    """A file that cannot be written (full disk, no permission); the previous file is kept."""


E = TypeVar("E", bound=BaseException)


def error_in_chain(error: BaseException, kind: type[E] = VitlightError) -> E | None:  # type: ignore[assignment]
    """The first `kind` error in the chain of causes (jsonargparse and Lightning wrap what our code raises)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def one_line(message: str, limit: int = MAX_MESSAGE_LENGTH) -> str:
    """A multi-line message (jsonargparse's indented bullet lists) as one line: its distinct lines joined by '; '."""
    lines = [re.sub(r"^\s*-\s+", "", line).strip() for line in str(message).splitlines()]
    text = "; ".join(dict.fromkeys(line for line in lines if line))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def exit_with_one_line(error: Exception) -> int:
    """For a command's `except Exception`: prints the user error in `error`'s chain as one line on
    stderr and returns its exit code; re-raises `error` when the chain holds none (a bug keeps its traceback)."""
    user_error = error_in_chain(error)
    if user_error is None:
        raise error
    sys.stderr.write(f"vitlight: error: {one_line(str(user_error))}\n")
    return user_error.exit_code
