"""One process trains in a run folder at a time: `run.lock` in the folder, held by rank 0.

The lock file holds the owner's host, pid and start time; the owner touches it every
`heartbeat_s` seconds. A second process refuses to start in one line. A lock is stale, and is
taken over, when its process is gone (same host: the pid no longer exists) or when its heartbeat
is older than VITLIGHT_LOCK_TIMEOUT_S seconds (default 600; another host on a shared file
system, where the pid cannot be checked). A takeover renames the stale file away first, so of
two processes that find the same stale lock only one gets it.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from vitlight.errors import ConfigError, WriteError
from vitlight.files import disk_full_reason, is_disk_full

LOCK_FILE = "run.lock"
TIMEOUT_ENV = "VITLIGHT_LOCK_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 600.0


def lock_timeout_s() -> float:
    try:
        return float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
    except ValueError:
        raise ConfigError(f"${TIMEOUT_ENV} must be a number of seconds, got {os.environ[TIMEOUT_ENV]!r}") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


class RunLock:
    """`acquire()` or a one-line ConfigError; `release()` removes the file if it is still ours."""

    def __init__(self, folder: Path, timeout_s: float | None = None) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.timeout_s = lock_timeout_s() if timeout_s is None else timeout_s
        self.owner = {"host": socket.gethostname(), "pid": os.getpid(), "since": time.time()}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _read(self) -> dict[str, Any] | None:
        return self._read_file(self.path)

    @staticmethod
    def _read_file(path: Path) -> dict[str, Any] | None:
        try:
            owner = json.loads(path.read_text())
            return owner if isinstance(owner, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # half written or garbage: judged by its age alone

    def _stale(self, owner: dict[str, Any]) -> bool:
        if owner.get("host") == self.owner["host"] and isinstance(owner.get("pid"), int):
            return not _pid_alive(owner["pid"])
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return True
        return age > self.timeout_s

    def _create(self) -> bool:
        try:
            handle = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(handle, "w") as stream:
                json.dump(self.owner, stream)
        except OSError as error:
            self.path.unlink(missing_ok=True)
            reason = disk_full_reason(self.path.parent) if is_disk_full(error, self.path.parent) else error.strerror
            raise WriteError(f"cannot write the lock {str(self.path)!r}: {reason}") from None
        return True

    def acquire(self, heartbeat_s: float | None = None) -> RunLock:
        for _ in range(5):
            if self._create():
                self._start_heartbeat(heartbeat_s or max(1.0, self.timeout_s / 4))
                return self
            owner = self._read()
            if owner is None:
                continue  # released meanwhile
            if not self._stale(owner):
                since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(owner.get("since", 0)))
                raise ConfigError(
                    f"the run folder {str(self.path.parent)!r} is in use by process {owner.get('pid')} on "
                    f"{owner.get('host')} (since {since}); wait for it to end, or delete {str(self.path)!r} if that "
                    "process is gone"
                )
            aside = self.path.with_name(f"{LOCK_FILE}.stale-{os.getpid()}")
            try:
                os.rename(self.path, aside)  # only one of two processes taking over gets the file
            except FileNotFoundError:
                continue
            if self._read_file(aside) != owner:  # another process took the stale lock first: give theirs back
                try:
                    os.link(aside, self.path)
                except OSError:
                    pass
            aside.unlink(missing_ok=True)
        raise ConfigError(f"could not take the lock {str(self.path)!r}: other processes keep taking it")

    def _start_heartbeat(self, every_s: float) -> None:
        def beat() -> None:
            while not self._stop.wait(every_s):
                try:
                    os.utime(self.path)
                except OSError:
                    return

        self._thread = threading.Thread(target=beat, name="vitlight-run-lock", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._read() == self.owner:
            self.path.unlink(missing_ok=True)
