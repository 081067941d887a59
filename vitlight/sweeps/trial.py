"""One trial: a real `vitlight` subprocess in its own folder, watched until it ends.

The folder `trials/NNNN/` holds `output.log` (the trial's stdout and stderr), `progress.jsonl`
(per-epoch metrics, written by vitlight.sweeps.progress.ProgressFile), `heartbeat` (touched by the
runner while the trial runs, so that a runner elsewhere can tell a live trial from a cut-off
one) and the trial's vitlight run folder(s) (`--runs_dir` points here).

On Linux the trial is started through a small launcher that asks the kernel to send it SIGTERM
when the runner dies, so that killing the runner (even with SIGKILL) does not leave it behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vitlight.runs import SUMMARY_FILE

HEARTBEAT_FILE = "heartbeat"
PROGRESS_FILE = "progress.jsonl"
OUTPUT_FILE = "output.log"
STOP_GRACE_S = 30.0
# prctl(PR_SET_PDEATHSIG, SIGTERM), then exec the trial; exits at once if the runner is already gone.
_LAUNCHER = (
    "import ctypes,os,signal,sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)\n"
    "os.getppid() == int(sys.argv[1]) or sys.exit(143)\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


@dataclass
class TrialResult:
    exit_code: int | None
    pruned: bool = False
    stopped: bool = False
    reports: list[float] = field(default_factory=list)
    wall_time_s: float = 0.0


def launch_argv(argv: list[str]) -> list[str]:
    if sys.platform.startswith("linux"):
        return [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *argv]
    return list(argv)


def heartbeat_age(trial_dir: Path) -> float | None:
    try:
        return time.time() - (trial_dir / HEARTBEAT_FILE).stat().st_mtime
    except FileNotFoundError:
        return None


def touch(path: Path) -> None:
    path.touch()
    os.utime(path, None)


class ProgressReader:
    """Reads the complete new lines of progress.jsonl; each one holding the metric is one iteration."""

    def __init__(self, path: Path, metric: str) -> None:
        self.path = path
        self.metric = metric
        self.offset = 0

    def new_values(self) -> list[float]:
        try:
            with open(self.path, "rb") as stream:
                stream.seek(self.offset)
                data = stream.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        values = []
        for line in data[:end].splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record.get(self.metric), (int, float)):
                values.append(float(record[self.metric]))
        return values


def run_trial(
    argv: list[str],
    trial_dir: Path,
    env: dict[str, str],
    metric: str,
    stop: threading.Event,
    report: Callable[[float, int], bool] | None = None,
    on_start: Callable[[int], None] | None = None,
    cwd: str | None = None,
    poll_s: float = 1.0,
    heartbeat_s: float = 5.0,
    on_beat: Callable[[], None] | None = None,
) -> TrialResult:
    """Runs argv until it exits, the runner is stopped, or `report(value, iteration)` says prune.
    `on_beat` is called with every heartbeat (the engine records one in a shared database)."""
    trial_dir.mkdir(parents=True, exist_ok=True)
    heartbeat = trial_dir / HEARTBEAT_FILE
    touch(heartbeat)
    if on_beat is not None:
        on_beat()
    reader = ProgressReader(trial_dir / PROGRESS_FILE, metric)
    result = TrialResult(exit_code=None)
    started = time.time()
    with open(trial_dir / OUTPUT_FILE, "ab") as log:
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            launch_argv(argv), stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True
        )
        if on_start is not None:
            on_start(process.pid)
        last_beat = time.time()
        while True:
            code = process.poll()
            if report is not None:
                for value in reader.new_values():
                    result.reports.append(value)
                    if report(value, len(result.reports)) and code is None:
                        result.pruned = True
                        _terminate(process)
                        code = process.returncode
                        break
            if code is not None or result.pruned:
                break
            if stop.is_set():
                result.stopped = True
                _terminate(process)
                break
            if time.time() - last_beat >= heartbeat_s:
                touch(heartbeat)
                if on_beat is not None:
                    on_beat()
                last_beat = time.time()
            stop.wait(poll_s)
    result.exit_code = process.returncode
    result.wall_time_s = round(time.time() - started, 3)
    return result


def _terminate(process: subprocess.Popen) -> None:
    """SIGTERM to the trial's process group (Lightning stops at the next batch), SIGKILL after a grace period."""
    for sig, wait in ((signal.SIGTERM, STOP_GRACE_S), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def find_summaries(trial_dir: Path) -> list[Path]:
    """The summary.json files of the run folders a trial wrote, oldest first."""
    return sorted(trial_dir.rglob(SUMMARY_FILE), key=lambda p: p.stat().st_mtime)


def read_metric(summary: dict[str, Any], name: str) -> float | None:
    """The sweep metric from summary.json: a pipeline's metrics, test, best validation, then top level."""
    for section in (summary.get("metrics"), summary.get("test"), summary.get("best_validation"), summary):
        if (
            isinstance(section, dict)
            and isinstance(section.get(name), (int, float))
            and not isinstance(section.get(name), bool)
        ):
            return float(section[name])
    return None


def last_error_line(trial_dir: Path) -> str:
    """The most telling line of the trial's output: a `vitlight: error:` line, else the last one."""
    try:
        lines = [
            line.strip() for line in (trial_dir / OUTPUT_FILE).read_text(errors="replace").splitlines() if line.strip()
        ]
    except FileNotFoundError:
        return ""
    errors = [
        line
        for line in lines
        if line.startswith("vitlight: error:") or line.split(":")[0].endswith(("Error", "Exception"))
    ]
    text = (errors or lines or [""])[-1]
    return text if len(text) <= 300 else text[:297] + "..."


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_orphan(pid: int, marker: str) -> None:
    """Ends a trial process left by a runner that died, when its command line is that trial's."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return
    if marker in cmdline:
        try:
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            pass
