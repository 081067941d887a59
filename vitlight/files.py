"""Writing files so that nothing the user had is lost: a temporary file in the same folder,
flushed and fsynced, then renamed over the target. A kill or a full disk during the write
leaves the previous file in place, and the failure ends in one line."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from vitlight.errors import ConfigError, VitlightError, WriteError


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

    An OSError (a full disk, no permission), or the RuntimeError torch's zip writer turns a full
    disk into, removes the temporary file and raises `error` with one line: `saving <what> '<path>'
    failed: the disk is full (12 KiB free on '<folder>'); the previous <what> is kept`.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(
            dir=path.parent, prefix=temporary_prefix or f".{path.name}.", suffix=".tmp"
        )
    except OSError as failure:
        raise error(f"cannot write into {str(path.parent)!r}: {_reason(failure, path.parent)}") from None
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, default_file_mode() if file_mode is None else file_mode)
        os.replace(temporary, path)
    except (OSError, RuntimeError) as failure:
        if isinstance(failure, RuntimeError) and not _ZIP_WRITE_FAILED.search(str(failure)):
            Path(temporary).unlink(missing_ok=True)
            raise
        reason = _reason(failure, path.parent)  # measured before the temporary file frees its space
        Path(temporary).unlink(missing_ok=True)
        kept = f"the previous {what} is kept" if path.exists() else f"no earlier {what} exists"
        raise error(f"saving {what} {str(path)!r} failed: {reason}; {kept}") from None
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: Any, what: str = "file", temporary_prefix: str | None = None) -> None:
    """`data` as indented JSON (values JSON lacks written as text), atomically; readable by others (0644)."""
    text = json.dumps(data, indent=2, sort_keys=False, default=str).encode()
    write_atomic(path, lambda stream: stream.write(text), what=what, file_mode=0o644, temporary_prefix=temporary_prefix)


# what torch's zip writer (inline_container.cc) raises when a write fails: it hides the OSError
_ZIP_WRITE_FAILED = re.compile(r"unexpected pos|file write failed|PytorchStreamWriter failed writing")


def free_space(folder: str | Path) -> str:
    """The space left on the file system of `folder` (or its nearest existing parent), e.g. '12 KiB'."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return "unknown space"
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if free < 1024 or unit == "GiB":
            return f"{free:.0f} {unit}" if unit == "bytes" else f"{free:.1f} {unit}"
        free /= 1024
    return "unknown space"


def is_disk_full(failure: BaseException, folder: str | Path) -> bool:
    """An ENOSPC (or EDQUOT) OSError, or torch's RuntimeError for a failed zip write on a nearly full disk."""
    if isinstance(failure, OSError):
        return failure.errno in (errno.ENOSPC, errno.EDQUOT)
    if not _ZIP_WRITE_FAILED.search(str(failure)):
        return False
    try:
        return shutil.disk_usage(folder).free < 64 * 1024 * 1024
    except OSError:
        return True


def disk_full_reason(folder: str | Path) -> str:
    return f"the disk is full ({free_space(folder)} free on {str(folder)!r})"


def _reason(failure: BaseException, folder: str | Path) -> str:
    if is_disk_full(failure, folder):
        return disk_full_reason(folder)
    if isinstance(failure, OSError):
        return failure.strerror or str(failure)
    return f"the write failed ({(str(failure).splitlines() or [''])[0].strip()[:160]})"


def remove_stale_temporaries(*folders: str | Path) -> list[Path]:
    """Removes every `*.tmp` file in `folders` (not below them): temporaries of atomic writes that a killed
    process left (each can be a whole checkpoint). Call only while holding the folder's lock."""
    removed = []
    for folder in folders:
        for path in Path(folder).glob("*.tmp"):
            try:
                if path.is_file():
                    path.unlink()
                    removed.append(path)
            except OSError:
                continue
    return removed


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+=-]*")


def folder_name_problem(name: str, key: str) -> str | None:
    """Why `name` cannot be one folder name (a '/', '..', an absolute path, odd characters), or None."""
    if _SAFE_NAME.fullmatch(name or "") and len(name) <= 200:
        return None
    return (
        f"{key} {name!r} is not a single folder name; use letters, digits and . _ + = - (starting with a letter or "
        "digit, no '/' or '..')"
    )


def check_folder_name(name: str, key: str) -> str:
    """`name` as one folder name (runs/<experiment>/, runs/sweeps/<name>/), else a one-line ConfigError."""
    problem = folder_name_problem(name, key)
    if problem:
        raise ConfigError(problem)
    return name
