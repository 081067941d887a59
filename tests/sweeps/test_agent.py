"""The online path of `vitlight sweep` with the W&B server and `wandb agent` replaced by recorders.

No W&B server is reachable here, so `wandb.sweep` and the agent processes are stand-ins that
record what they were given: the file sent unchanged, the agent command printed and started with
this Python first on PATH, --count split between workers, and a second start joining the sweep.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import wandb
import yaml

from tests.conftest import ROOT
from vitlight.cli import main
from vitlight.sweeps import agent

SWEEP = ROOT / "sweeps" / "scaling_model_mini.yaml"
RECORD_AGENT = (
    "import json, os, sys; "
    "open(os.path.join(os.environ['AGENT_RECORDS'], str(os.getpid()) + '.json'), 'w')"
    ".write(json.dumps({'argv': json.loads(sys.argv[1]), 'path': os.environ['PATH']}))"
)


@pytest.fixture
def fake_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    created: list[dict] = []
    records = tmp_path / "agents"
    records.mkdir()

    def create_sweep(sweep: dict, project: str, entity: str) -> str:
        created.append({"sweep": sweep, "project": project, "entity": entity})
        return f"sw{len(created)}"

    class FakeApi:
        default_entity = "someone"

    def recording_agent(path: str, count: int | None) -> list[str]:
        return [sys.executable, "-c", RECORD_AGENT, json.dumps(real_agent_command(path, count))]

    real_agent_command = agent.agent_command
    monkeypatch.setattr(wandb, "sweep", create_sweep)
    monkeypatch.setattr(wandb, "Api", FakeApi)
    monkeypatch.setattr(agent, "agent_command", recording_agent)
    monkeypatch.setenv("AGENT_RECORDS", str(records))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)  # credentials present: online
    monkeypatch.chdir(ROOT)  # parameter keys are checked against the experiments the file names
    return {"created": created, "records": records}


def agent_runs(records: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted(records.glob("*.json"))]


def test_online_creates_the_sweep_prints_the_agent_command_and_runs_agents(fake_server: dict, tmp_path: Path, capsys):
    folder = tmp_path / "sweep"
    code = main(["sweep", str(SWEEP), "--folder", str(folder), "--workers", "2", "--count", "3", "--project", "vit"])
    assert code == 0
    (created,) = fake_server["created"]
    assert created["sweep"] == yaml.safe_load(SWEEP.read_text())  # the file as it is, for the server to run
    assert (created["project"], created["entity"]) == ("vit", "someone")
    out = capsys.readouterr().out
    assert "W&B: online" in out
    assert "wandb agent someone/vit/sw1" in out
    runs = agent_runs(fake_server["records"])
    assert sorted(int(run["argv"][run["argv"].index("--count") + 1]) for run in runs) == [1, 2]  # 3 trials, 2 agents
    for run in runs:
        assert run["argv"][-1] == "someone/vit/sw1" and "agent" in run["argv"]
        # `wandb agent` runs ${interpreter} as `python` from PATH: this Python's folder comes first
        assert run["path"].split(":")[0] == str(Path(sys.executable).parent)
    assert json.loads((folder / agent.RECORD_FILE).read_text())["path"] == "someone/vit/sw1"


def test_starting_again_joins_the_sweep_and_a_changed_file_makes_a_new_one(fake_server: dict, tmp_path: Path, capsys):
    folder = tmp_path / "sweep"
    assert main(["sweep", str(SWEEP), "--folder", str(folder), "--count", "1"]) == 0
    assert main(["sweep", str(SWEEP), "--folder", str(folder), "--count", "1"]) == 0
    assert len(fake_server["created"]) == 1
    assert "joining it" in capsys.readouterr().out
    changed = tmp_path / "changed.yaml"
    raw = yaml.safe_load(SWEEP.read_text())
    raw["parameters"]["seed_everything"] = {"value": 1}
    changed.write_text(yaml.safe_dump(raw))
    assert main(["sweep", str(changed), "--folder", str(folder), "--count", "1"]) == 0
    assert len(fake_server["created"]) == 2
    assert all(run["argv"][-1].startswith("someone/vitlight/sw") for run in agent_runs(fake_server["records"]))


def test_checking_a_file_never_creates_a_sweep(fake_server: dict, capsys):
    assert main(["sweep", str(SWEEP), "--check"]) == 0
    assert fake_server["created"] == [] and agent_runs(fake_server["records"]) == []
