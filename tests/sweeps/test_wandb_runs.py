"""What W&B gets from a sweep: the runs of a real offline `vitlight sweep` and of trials started by wandb's own
agent (`wandb.wandb_agent.Agent._command_run`, the code `wandb agent` runs for each run the server schedules, with
the agent's variables and offline mode), read back from the offline run files.

Every trial's run carries the sweep's name (group, tag, config `sweep_name`) and its parameters as flat config
keys; the dashboard's runset filter selects exactly the trial runs; a pipeline trial under the agent makes one run
in the sweep, with the agent's id, and its stages' runs sit outside the sweep in the sweep's group; the one
`wandb sync` command `vitlight sweep` prints finds every run of the offline sweep (real wandb CLI, --dry-run).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, run_vitlight, write_image_folder
from tests.helpers.wandb_records import read_records, run_config
from tests.sweeps.test_engine import write_sweep
from vitlight.sweeps.dashboard import build_spec, runset_filter
from vitlight.sweeps.spec import load_spec

pytestmark = pytest.mark.slow  # real trials: about 1-3 minutes on 2 busy cores


def tiny_sweep(path: Path, images: Path, name: str = "tiny_study") -> Path:
    """A two-trial grid of smoke fits on an image folder, written as a user would write a sweep file."""
    parameters = {
        "sweep_name": {"value": name},
        "data.train_size": {"values": [16, 32]},
        "seed_everything": {"value": 0},
    }
    extra = (
        "--data=ImageFolder",
        f"--data.data_dir={images}",
        "--data.image_size=14",
        "--trainer.num_sanity_val_steps=0",
    )
    return write_sweep(path, parameters, name, extra)


def wandb_runs(below: Path) -> list[dict]:
    """Every W&B run under a folder, as its offline run file says: id, sweep, group, tags, config, summary."""
    runs = []
    for path in sorted(below.rglob("offline-run-*/run-*.wandb")):
        records = read_records(path)
        (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
        summary: dict = {}
        for record in records:
            if record.WhichOneof("record_type") == "summary":
                summary.update(
                    {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.summary.update}
                )
        runs.append(
            {
                "id": run.run_id,
                "sweep_id": run.sweep_id,
                "group": run.run_group,
                "tags": list(run.tags),
                "job_type": run.job_type,
                "config": run_config(path),
                "summary": summary,
                "folder": path.parent,
            }
        )
    return runs


def selected(view: dict, runs: list[dict]) -> list[dict]:
    """The runs the dashboard's runset filter (a wandb-workspaces expression) keeps."""
    conditions = runset_filter(view).items  # an expr.Or of config equalities
    assert all(c.op == "=" and c.key.section == "config" for c in conditions)
    return [run for run in runs if any(run["config"].get(c.key.name) == c.value for c in conditions)]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_folder(tmp_path_factory.mktemp("images") / "images", per_class=12, size=16)


@pytest.fixture(scope="module")
def offline_sweep(tmp_path_factory: pytest.TempPathFactory, images: Path) -> dict:
    tmp = tmp_path_factory.mktemp("offline")
    sweep = tiny_sweep(tmp / "tiny_study.yaml", images)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "VITLIGHT_SWEEP"))}
    env.update(WANDB_MODE="offline", HOME=str(tmp / "home"), WANDB_CONFIG_DIR=str(tmp / "wandb-config"))
    result = run_vitlight("sweep", str(sweep), "--workers", "1", cwd=tmp, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    return {"folder": tmp / "runs" / "sweeps" / "tiny_study", "stdout": result.stdout, "cwd": tmp, "env": env}


def test_offline_trials_carry_the_sweep_and_the_dashboard_selects_them(offline_sweep: dict):
    runs = wandb_runs(offline_sweep["folder"])
    assert len(runs) == 2
    for run in runs:
        assert run["group"] == "tiny_study" and "tiny_study" in run["tags"]
        assert run["config"]["sweep_name"] == "tiny_study"
        assert run["config"]["data.train_size"] in (16, 32) and run["config"]["seed_everything"] == 0  # flat keys
        assert run["config"]["model"]["init_args"]["model_name"]  # the nested resolved config the panels group by
        assert (
            isinstance(run["summary"]["val/acc"], (int, float))
            and run["summary"]["val/acc_max"] == run["summary"]["val/acc"]
        )
    view = build_spec(load_spec(offline_sweep["folder"] / "sweep.yaml"))
    assert selected(view, runs) == runs


def test_the_printed_sync_command_finds_every_run(offline_sweep: dict):
    last = offline_sweep["stdout"].rstrip().splitlines()[-1]
    assert last.startswith("wandb sync ") and last.endswith("/wandb/offline-run-*")
    wandb_cli = str(Path(sys.executable).with_name("wandb"))
    command = last.replace("wandb sync", f"{wandb_cli} sync --dry-run", 1)
    result = subprocess.run(
        ["bash", "-c", command], cwd=offline_sweep["cwd"], env=offline_sweep["env"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    found = result.stdout + result.stderr
    runs = wandb_runs(offline_sweep["folder"])
    assert f"Would sync {len(runs)} run(s)" in found, found
    for run in runs:
        assert run["folder"].name in found, found


def agent_trial(spec_path: Path, run_id: str, values: dict, tmp: Path, extra: list[str]) -> Path:
    """One run as `wandb agent` starts it: wandb's Agent builds the command from the sweep's command and the
    run's parameters, sets WANDB_RUN_ID and WANDB_SWEEP_PARAM_PATH (offline, WANDB_SWEEP_ID set as the agent
    does) and starts it; returns the runs folder."""
    from wandb.wandb_agent import Agent

    spec = yaml.safe_load(spec_path.read_text())
    runs_dir = tmp / "runs"
    saved = dict(os.environ)
    os.environ.update(
        WANDB_SWEEP_ID="sw0001",
        WANDB_MODE="offline",
        WANDB_DIR=str(tmp),
        PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]]),  # `python` is this one
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    try:
        agent = Agent(api=None, queue=None, sweep_id="sw0001")
        agent._sweep_command = [*spec["command"], *extra, f"--runs_dir={runs_dir}"]
        parameters = {name: {"value": value} for name, value in values.items()}
        agent._command_run({"run_id": run_id, "program": spec["program"], "args": parameters})
        assert agent._run_processes[run_id].wait() == 0
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return runs_dir


def test_a_fit_under_the_agent_is_the_agents_run(tmp_path: Path, images: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)  # sweep files name experiments relative to the repository, where `wandb agent` runs
    sweep = tiny_sweep(tmp_path / "tiny_study.yaml", images)
    values = {"sweep_name": "tiny_study", "data.train_size": 16, "seed_everything": 0}
    runs_dir = agent_trial(sweep, "fit00001", values, tmp_path, [])
    (run,) = wandb_runs(runs_dir)
    assert (run["id"], run["sweep_id"], run["group"]) == ("fit00001", "sw0001", "tiny_study")
    assert run["config"]["data.train_size"] == 16 and "tiny_study" in run["tags"]
    assert selected(build_spec(load_spec(sweep)), [run]) == [run]
    (summary,) = [json.loads(p.read_text()) for p in runs_dir.rglob("summary.json")]
    assert summary["wandb_run_id"] == "fit00001"


def test_a_pipeline_under_the_agent_makes_one_run_in_the_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    sweep = ROOT / "sweeps" / "igpt_scaling_mini.yaml"
    shrink = [  # after the file's own flags: a smoke pretraining and a small probe
        "--pretrain.trainer.max_epochs=1",
        "--pretrain.trainer.limit_train_batches=2",
        "--pretrain.trainer.limit_val_batches=1",
        "--pretrain.trainer.limit_test_batches=1",
        "--pretrain.data.train_size=64",
        "--probe.data.train_size=40",
        "--probe.max_iter=20",
        "--probe.baseline=none",
    ]
    values = {"sweep_name": "igpt_scaling_mini", "pretrain.model.preset": "igpt-tiny", "seed": 0}
    runs_dir = agent_trial(sweep, "pipe0001", values, tmp_path, shrink)
    runs = wandb_runs(runs_dir)
    in_sweep = [run for run in runs if run["sweep_id"]]
    assert [(run["id"], run["job_type"]) for run in in_sweep] == [("pipe0001", "pipeline")]
    (pipeline,) = in_sweep
    assert isinstance(pipeline["summary"]["probe/test_acc"], float)
    assert pipeline["config"]["pretrain"]["model"]["preset"] == "igpt-tiny"  # the panels' nested key
    assert len(runs) == 3 and {run["group"] for run in runs} == {"igpt_scaling_mini"}  # pretrain, probe, pipeline
    assert selected(build_spec(load_spec(sweep)), runs) == [pipeline]
    (record,) = [json.loads(p.read_text()) for p in runs_dir.glob("pipeline_*/*/summary.json")]
    assert record["wandb_run_id"] == "pipe0001"
