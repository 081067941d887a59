"""run.lock: a live owner keeps it, a dead one (same host) or a silent one (another host, old heartbeat) loses it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vitlight.errors import ConfigError
from vitlight.run_lock import LOCK_FILE, RunLock

ROOT = Path(__file__).resolve().parents[1]
HOLD = (
    "import sys, time; from vitlight.run_lock import RunLock; RunLock(sys.argv[1]).acquire(heartbeat_s=0.2); "
    "print('held', flush=True); time.sleep(600)"
)


def hold_in_another_process(folder: Path) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdout.readline().strip() == "held"
    return process


def test_a_live_process_keeps_the_lock_and_a_killed_one_loses_it(tmp_path: Path):
    holder = hold_in_another_process(tmp_path)
    try:
        with pytest.raises(ConfigError, match=f"in use by process {holder.pid} on "):
            RunLock(tmp_path, timeout_s=0.5).acquire()
        mtime = (tmp_path / LOCK_FILE).stat().st_mtime
        time.sleep(0.6)
        assert (tmp_path / LOCK_FILE).stat().st_mtime > mtime  # the owner's heartbeat
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        holder.stdout.close()
    lock = RunLock(tmp_path).acquire()  # the pid is gone on this host: stale, taken over
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()


def test_a_lock_from_another_host_is_stale_only_after_its_heartbeat_timeout(tmp_path: Path):
    path = tmp_path / LOCK_FILE
    path.write_text(json.dumps({"host": "other-node-17", "pid": 1, "since": time.time()}))
    with pytest.raises(ConfigError, match="in use by process 1 on other-node-17"):
        RunLock(tmp_path, timeout_s=60).acquire()
    old = time.time() - 120
    os.utime(path, (old, old))  # no heartbeat for two minutes: that node is gone
    lock = RunLock(tmp_path, timeout_s=60).acquire()
    assert json.loads(path.read_text())["host"] != "other-node-17"
    lock.release()


def test_two_processes_taking_over_one_stale_lock_do_not_both_get_it(tmp_path: Path):
    path = tmp_path / LOCK_FILE
    path.write_text(json.dumps({"host": "gone-node", "pid": 1, "since": 0}))
    os.utime(path, (0, 0))
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", HOLD, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "VITLIGHT_LOCK_TIMEOUT_S": "60"},
        )
        for _ in range(2)
    ]
    try:
        deadline = time.time() + 60
        while sum(r.poll() is not None for r in racers) < 1 and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        alive = [r for r in racers if r.poll() is None]
        refused = [r for r in racers if r.poll() is not None]
        assert len(alive) == 1 and len(refused) == 1
        assert "is in use by process" in refused[0].stderr.read()
        assert json.loads(path.read_text())["pid"] == alive[0].pid
    finally:
        for racer in racers:
            if racer.poll() is None:
                os.kill(racer.pid, signal.SIGKILL)
            racer.wait(timeout=30)
            racer.stdout.close()
            racer.stderr.close()
