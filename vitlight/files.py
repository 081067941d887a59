"""Writing files so that nothing the user had is lost: a temporary file in the same folder,
flushed and fsynced, then renamed over the target. A kill or a full disk during the write
leaves the previous file in place, and the failure ends in one line."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from vitlight.errors import VitlightError, WriteError


def default_file_mode() -> int:
    """The mode `open()` would give a new file under the current umask (mkstemp makes 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def write_atomic(
    path: str | Path,
    write: Callable[[IO[bytes]], None],
    what: str = "file",
    error: type[VitlightError] = WriteError,
    file_mode: int | None = None,
    temporary_prefix: str | None = None,
) -> None:
    """Calls `write(stream)` on a temporary file next to `path`, fsyncs it and renames it over `path`.

    An OSError (a full disk, no permission) removes the temporary file and raises `error` with
    one line: `saving <what> '<path>' failed: the disk is full; the previous <what> is kept`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=temporary_prefix or f".{path.name}.", suffix=".tmp"
        )
    except OSError as failure:
        raise error(f"cannot write into {str(path.parent)!r}: {_reason(failure)}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, default_file_mode() if file_mode is None else file_mode)
        os.replace(temporary, path)
    except OSError as failure:
        Path(temporary).unlink(missing_ok=True)
        kept = f"the previous {what} is kept" if path.exists() else f"no earlier {what} exists"
        raise error(f"saving {what} {str(path)!r} failed: {_reason(failure)}; {kept}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any, what: str = "file", temporary_prefix: str | None = None) -> None:
    """`data` as indented JSON (values JSON lacks written as text), atomically; readable by others (0644)."""
    text = json.dumps(data, indent=2, sort_keys=False, default=str).encode()
    write_atomic(path, lambda stream: stream.write(text), what=what, file_mode=0o644, temporary_prefix=temporary_prefix)


def _reason(failure: OSError) -> str:
    return "the disk is full" if failure.errno == errno.ENOSPC else (failure.strerror or str(failure))
