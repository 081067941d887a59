"""The offline engine: real `vitlight` subprocess trials, a crash recorded as failed, resume after a killed runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXPERIMENTS, SMOKE, run_vitlight
from tests.helpers.wandb_records import read_records
from vitlight.sweeps.trial import run_trial

QUICKSTART = str(EXPERIMENTS / "quickstart.yaml")


def write_sweep(
    path: Path,
    parameters: dict,
    name: str,
    extra: tuple[str, ...] = ("--trainer.limit_val_batches=1", "--trainer.num_sanity_val_steps=0"),
) -> Path:
    """A grid of quickstart smoke fits written as a user would write a sweep file; `extra` ends the command."""
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "program": "vitlight/__main__.py",
                "method": "grid",
                "metric": {"name": "test/acc", "goal": "maximize"},
                "parameters": parameters,
                "command": [
                    "${env}",
                    "${interpreter}",
                    "-m",
                    "vitlight",
                    "fit",
                    "--config",
                    QUICKSTART,
                    "--config",
                    str(SMOKE),
                    "${args}",
                    *extra,
                ],
            },
            sort_keys=False,
        )
    )
    return path


def trial_record(folder: Path, number: int) -> dict:
    return json.loads((folder / "trials" / f"{number:04d}" / "trial.json").read_text())


def run_groups(run_dir: Path) -> set[str]:
    files = list(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert files, f"no offline W&B run in {run_dir}"
    return {r.run.run_group for f in files for r in read_records(f) if r.WhichOneof("record_type") == "run"}


@pytest.mark.slow  # default run under 15 minutes; `make test-slow` runs it
def test_grid_runs_real_trials_and_a_crash_is_recorded_as_failed(tmp_path: Path):
    # patch 5 does not divide the 28-pixel digits: that trial exits with an error; the sweep goes on
    sweep = write_sweep(tmp_path / "grid.yaml", {"model.model_kwargs.patch_size": {"values": [5, 4]}}, "two")
    result = run_vitlight("sweep", str(sweep), "--workers", "1", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    folder = tmp_path / "runs" / "sweeps" / "two"
    records = [trial_record(folder, 0), trial_record(folder, 1)]  # Optuna visits the grid in a seeded random order
    crashed, finished = sorted(records, key=lambda r: r["values"]["model.model_kwargs.patch_size"], reverse=True)
    assert crashed["state"] == "failed" and crashed["exit_code"] != 0
    assert "patch_size" in crashed["error"]
    assert finished["state"] == "finished" and 0.0 <= finished["value"] <= 1.0
    assert "--model.model_kwargs.patch_size=4" in finished["argv"] and finished["argv"][1] == sys.executable
    (run_dir,) = [Path(d) if Path(d).is_absolute() else tmp_path / d for d in finished["run_dirs"]]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "finished" and summary["test"]["test/acc"] == finished["value"]
    assert run_groups(run_dir) == {"two"}  # W&B group = the sweep's name
    failed_line = next(line for line in result.stdout.splitlines() if "FAILED" in line)
    assert "exit code 2: vitlight: error:" in failed_line and "patch_size" in failed_line
    assert (
        result.stdout.index("FAILED") < result.stdout.index("this runner:") and "1 finished, 1 failed" in result.stdout
    )
    again = run_vitlight("sweep", str(sweep), cwd=tmp_path)  # a finished sweep starts nothing
    assert again.returncode == 0 and "no trials left" in again.stdout
    assert not (folder / "trials" / "0002").exists()


@pytest.mark.slow  # default run under 15 minutes; `make test-slow` runs it
def test_a_killed_runner_resumes_without_redoing_finished_trials(tmp_path: Path):
    sweep = write_sweep(tmp_path / "grid.yaml", {"model.optimizer.lr": {"values": [0.001, 0.002]}}, "resume")
    folder = tmp_path / "runs" / "sweeps" / "resume"
    command = [sys.executable, "-m", "vitlight", "sweep", str(sweep)]
    with open(tmp_path / "first.log", "w") as log:
        runner = subprocess.Popen(command, cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))
        deadline = time.time() + 400
        while time.time() < deadline:  # wait until trial 0 finished and trial 1 is running
            if (folder / "trials" / "0001" / "trial.json").is_file() and trial_record(folder, 0).get(
                "state"
            ) == "finished":
                break
            assert runner.poll() is None, (tmp_path / "first.log").read_text()
            time.sleep(0.5)
        else:
            pytest.fail("trial 1 did not start")
        trial_pid = None
        while trial_pid is None and time.time() < deadline:
            trial_pid = _trial_pid(folder, 1)
            time.sleep(0.2)
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
    first_run = [p.parent for p in (folder / "trials" / "0000").rglob("summary.json")]
    stamp = first_run[0].joinpath("summary.json").stat().st_mtime_ns
    _wait_gone(trial_pid)  # the trial dies with its runner (parent-death signal)

    result = run_vitlight("sweep", str(sweep), cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "trial 1: cut off" in result.stdout and "trial 2: started" in result.stdout
    assert trial_record(folder, 2)["state"] == "finished"
    assert trial_record(folder, 2)["values"] == trial_record(folder, 1)["values"]  # the cut-off trial is rerun
    assert not (folder / "trials" / "0003").exists()  # trial 0 was not redone
    assert [p.parent for p in (folder / "trials" / "0000").rglob("summary.json")] == first_run
    assert first_run[0].joinpath("summary.json").stat().st_mtime_ns == stamp
    lines = [line.split() for line in result.stdout.splitlines() if line.startswith("  ") and line.split()[0].isdigit()]
    assert [(line[0], line[1]) for line in lines] == [("0", "complete"), ("1", "cut"), ("2", "complete")]


def _trial_pid(folder: Path, number: int) -> int | None:
    import optuna

    from vitlight.sweeps.engine import storage

    study_name = json.loads((folder / "sweep.json").read_text())["id"]
    trials = optuna.load_study(study_name=study_name, storage=storage(folder)).get_trials(deepcopy=False)
    pid = trials[number].user_attrs.get("trial_pid") if len(trials) > number else None
    return int(pid) if pid else None


def _wait_gone(pid: int | None, timeout: float = 60) -> None:
    if pid is None:
        return
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    pytest.fail(f"trial process {pid} outlived its runner")


def test_hyperband_reports_stop_a_trial_early(tmp_path: Path):
    """The runner reads each per-epoch line of progress.jsonl and ends the trial when told to prune."""
    script = tmp_path / "fake_trial.py"
    script.write_text(
        "import json, os, time\n"
        "for epoch in range(100):\n"
        "    with open(os.environ['VITLIGHT_PROGRESS_FILE'], 'a') as f:\n"
        "        f.write(json.dumps({'epoch': epoch, 'val/acc': 0.1 * epoch}) + '\\n')\n"
        "    time.sleep(0.2)\n"
    )
    trial_dir = tmp_path / "trial"
    env = {**os.environ, "VITLIGHT_PROGRESS_FILE": str(trial_dir / "progress.jsonl")}
    seen: list[tuple[float, int]] = []

    def report(value: float, iteration: int) -> bool:
        seen.append((value, iteration))
        return iteration >= 3

    started = time.time()
    result = run_trial(
        [sys.executable, str(script)], trial_dir, env, "val/acc", threading.Event(), report=report, poll_s=0.1
    )
    assert result.pruned and result.exit_code != 0
    assert seen[:3] == [(0.0, 1), (0.1, 2), (0.2, 3)]
    assert time.time() - started < 15
    assert (trial_dir / "output.log").is_file() and (trial_dir / "heartbeat").is_file()
