"""Offline sweeps on a shared database: a real PostgreSQL server (started here, on a unix socket),
runners in separate processes and separate folders (machines that share only the database)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
import yaml

from tests.conftest import EXPERIMENTS
from tests.helpers import postgres
from vitlight.sweeps.engine import SweepRunner, open_database, storage
from vitlight.sweeps.spec import load_spec

GRID = [0.001, 0.002, 0.003, 0.004]
# The trials are a small script, not training: what is tested is who runs which grid point
# (real `vitlight fit` trials are in test_engine.py). It takes the args a vitlight trial gets and
# writes the summary.json the engine reads. The first trial of each runner waits for the other
# runner's first one (a marker file in MEET), so that the two runners surely work at the same time.
TRIAL = """
import json, os, sys, time
args = dict(a.lstrip("-").split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
meet = os.environ["MEET"]
open(os.path.join(meet, str(os.getpid())), "w").close()
deadline = time.time() + 240
while len(os.listdir(meet)) < 2:
    if time.time() > deadline:
        sys.exit("the other runner never started a trial")
    time.sleep(0.2)
run = os.path.join(args["runs_dir"], "trial", "run")
os.makedirs(run, exist_ok=True)
with open(os.path.join(run, "summary.json"), "w") as f:
    json.dump({"status": "finished", "test": {"test/acc": float(args["model.optimizer.lr"]) * 100}}, f)
"""


@pytest.fixture(scope="module")
def postgres_sockets():
    reason = postgres.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    with postgres.running_server() as sockets:
        yield sockets


def write_sweep(tmp_path: Path, name: str = "shared") -> Path:
    script = tmp_path / "trial.py"
    script.write_text(TRIAL)
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": name,
                "method": "grid",
                "metric": {"name": "test/acc", "goal": "maximize"},
                "parameters": {"model.optimizer.lr": {"values": GRID}},
                "command": [
                    "${env}",
                    "${interpreter}",
                    str(script),
                    "fit",
                    "--config",
                    str(EXPERIMENTS / "quickstart.yaml"),
                    "${args}",
                ],
            },
            sort_keys=False,
        )
    )
    return path


def started_trials(output: str) -> dict[int, str]:
    """trial number -> lr, from the runner's `trial N: started  model.optimizer.lr=X` lines."""
    found = {}
    for line in output.splitlines():
        if ": started" in line and line.startswith("trial "):
            found[int(line.split()[1].rstrip(":"))] = line.split("=")[-1]
    return found


def test_two_runners_share_one_grid_on_postgresql(postgres_sockets: str, tmp_path: Path):
    url = postgres.new_database(postgres_sockets, "two_runners")
    sweep = write_sweep(tmp_path)
    (tmp_path / "meet").mkdir()
    runners, logs = [], []
    for machine in ("a", "b"):  # each its own folder: they share only the database
        logs.append(tmp_path / f"runner-{machine}.log")
        with open(logs[-1], "w") as log:
            runners.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "vitlight",
                        "sweep",
                        str(sweep),
                        "--storage",
                        url,
                        "--folder",
                        str(tmp_path / machine),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=tmp_path,
                    env={**os.environ, "MEET": str(tmp_path / "meet")},
                )
            )
    try:
        codes = [runner.wait(timeout=300) for runner in runners]
    finally:
        for runner in runners:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
    outputs = [log.read_text() for log in logs]
    print("\n".join(f"--- runner {m}\n{o}" for m, o in zip("ab", outputs)))
    assert codes == [0, 0], outputs
    ran = [started_trials(output) for output in outputs]
    assert all(ran), outputs  # both runners worked on the sweep
    assert not set(ran[0]) & set(ran[1])  # no trial number twice
    values = [lr for trials in ran for lr in trials.values()]
    assert sorted(map(float, values)) == GRID  # every grid point once, none twice

    study_name = json.loads((tmp_path / "a" / "sweep.json").read_text())["id"]
    assert json.loads((tmp_path / "b" / "sweep.json").read_text())["id"] == study_name
    assert (
        "postgresql+psycopg://postgres@/two_runners"
        in json.loads((tmp_path / "a" / "sweep.json").read_text())["storage"]
    )
    trials = optuna.load_study(study_name=study_name, storage=open_database(url)).get_trials()
    assert [t.number for t in trials] == [0, 1, 2, 3]
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    assert sorted(t.value for t in trials) == pytest.approx([v * 100 for v in GRID])
    for machine, trials_run in zip("ab", ran):  # each trial's folder is on the machine that ran it
        assert {int(p.name) for p in (tmp_path / machine / "trials").iterdir()} == set(trials_run)
    third = SweepRunner(load_spec(sweep), tmp_path / "c", storage_url=url)  # a third machine finds the sweep done
    assert third.exhausted(third.study(0))


def test_runners_opening_a_new_database_at_the_same_moment_all_succeed(postgres_sockets: str, tmp_path: Path):
    """Creating Optuna's tables in an empty database at the same moment collides (a unique violation
    in PostgreSQL's catalog); the losers retry. Threads, each with its own connections, start together."""
    url = postgres.new_database(postgres_sockets, "same_moment")
    spec = load_spec(write_sweep(tmp_path, "race"))
    start, opened, errors = threading.Barrier(3), [], []

    def open_runner(machine: str) -> None:
        start.wait()
        try:
            runner = SweepRunner(spec, tmp_path / machine, storage_url=url)
            opened.append((runner.sweep_id, len(runner.study(0).trials)))
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=open_runner, args=(f"m{i}",)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert opened == [(f"race-{spec.digest()}", 0)] * 3
    assert len(optuna.get_all_study_summaries(open_database(url))) == 1  # one study, not three


def test_a_folder_kept_on_a_database_refuses_the_journal(tmp_path: Path):
    """A runner that forgets --storage would silently start a second sweep; it stops with one line instead."""
    from vitlight.sweeps.spec import SweepSpecError

    sweep = load_spec(write_sweep(tmp_path, "kept"))
    SweepRunner(sweep, tmp_path / "folder", storage_url=f"sqlite:///{tmp_path / 'sweep.db'}")
    with pytest.raises(
        SweepSpecError, match=r"keeps its trials in sqlite:///.*sweep\.db, not optuna\.journal; pass --storage"
    ):
        SweepRunner(sweep, tmp_path / "folder")
    assert isinstance(storage(tmp_path / "folder", f"sqlite:///{tmp_path / 'sweep.db'}"), optuna.storages.RDBStorage)


def test_a_bad_storage_url_is_one_line(tmp_path: Path):
    sweep = write_sweep(tmp_path, "bad")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vitlight",
            "sweep",
            str(sweep),
            "--storage",
            "postgresql+psycopg://nobody:secret@/x?host=/nonexistent",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert (
        line.startswith("vitlight: error: sweep: cannot open --storage postgresql+psycopg://nobody:***@/x")
        and "secret" not in line
    )
    assert not (tmp_path / "runs").exists()  # no sweep folder tied to a URL that does not work


def test_a_trial_on_another_machine_is_alive_while_its_heartbeat_in_the_database_is(tmp_path: Path):
    """Runners that share only the database cannot see each other's heartbeat files: the one in the
    database decides whether a running trial elsewhere was cut off."""
    spec = load_spec(write_sweep(tmp_path, "beats"))
    url = f"sqlite:///{tmp_path / 'beats.db'}"
    elsewhere = SweepRunner(spec, tmp_path / "machine-a", storage_url=url)
    here = SweepRunner(spec, tmp_path / "machine-b", storage_url=url, say=lambda line: None)
    study = elsewhere.study(0)
    live, dead = study.ask(elsewhere.space), study.ask(elsewhere.space)
    for trial, beat_age in ((live, 5.0), (dead, 200.0)):
        trial.set_user_attr("runner", "other-runner")
        trial.set_user_attr("host", "another-host")
        trial.set_user_attr("heartbeat", time.time() - beat_age)
    here.recover_stale(here.study(0))
    states = {t.number: t.state for t in here.study(0).get_trials()}
    assert states[live.number] == optuna.trial.TrialState.RUNNING
    assert states[dead.number] == optuna.trial.TrialState.FAIL
    queued = [t for t in here.study(0).get_trials() if t.state == optuna.trial.TrialState.WAITING]
    assert [t.user_attrs["rerun_of"] for t in queued] == [dead.number]  # its parameters are queued again
