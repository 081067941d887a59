"""Sweep files: every file in sweeps/ is valid and its keys parse; bad files end in one line naming the bad names."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from tests.conftest import EXPERIMENTS, ROOT, SMOKE
from vitlight.cli import main
from vitlight.sweeps import space
from vitlight.sweeps.keys import check_keys
from vitlight.sweeps.macros import expand, vitlight_arguments
from vitlight.sweeps.spec import SweepSpecError, load_spec, parse_spec

SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))
QUICKSTART = str(EXPERIMENTS / "quickstart.yaml")
FIT = ["${env}", "${interpreter}", "-m", "vitlight", "fit", "--config", QUICKSTART, "--config", str(SMOKE), "${args}"]


def sweep_file(tmp_path: Path, parameters: dict, method: str = "grid", **extra) -> Path:
    path = tmp_path / "sweep.yaml"
    config = {
        "name": "t",
        "method": method,
        "metric": {"name": "test/acc", "goal": "maximize"},
        "parameters": parameters,
        "command": FIT,
        **extra,
    }
    path.write_text(yaml.safe_dump(config))
    return path


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("vitlight: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_the_sweeps_folder_holds_every_study():
    names = {path.stem for path in SWEEPS}
    for study in ("scaling_data", "scaling_model", "pretrain_transfer", "igpt_scaling", "vit_hparams_bayes"):
        assert {study, f"{study}_mini"} <= names


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_each_sweep_file_is_valid_and_every_key_parses(path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)  # the files name experiments/ relative to the repository, as `wandb agent` runs them
    spec = load_spec(path)
    assert spec.method in ("grid", "random", "bayes") and spec.metric
    assert spec.command[:2] == ("${env}", "${interpreter}") and "${args}" in spec.command
    check_keys(spec)  # every parameter (each categorical value) through the command's own parser
    if spec.method == "grid":
        assert spec.grid_size() == len(list(space.sampler(spec, 0)._all_grids))


def test_unknown_method_bad_distribution_and_unknown_keys_in_one_line(tmp_path: Path, capsys):
    path = sweep_file(
        tmp_path, {"model.optimizer.lr": {"distribution": "gaussian", "min": 0.1, "max": 1}}, method="grdi"
    )
    assert main(["sweep", str(path)]) == 2
    line = one_error_line(capsys)
    assert "grdi" in line and "grid, random, bayes" in line
    assert "gaussian" in line and "model.optimizer.lr" in line


def test_unknown_keys_are_listed_by_name(tmp_path: Path, capsys):
    path = sweep_file(
        tmp_path,
        {
            "model.optimizer.lrr": {"values": [0.1]},
            "data.train_size": {"values": [16, 24]},
            "data.trian_size": {"values": [8]},
            "model": {"parameters": {"optimizer": {"parameters": {"weight_decya": {"min": 0.0, "max": 0.1}}}}},
        },
        method="random",
    )
    assert main(["sweep", str(path), "--check"]) == 2
    line = one_error_line(capsys)
    for bad in ("model.optimizer.lrr", "data.trian_size", "model.optimizer.weight_decya"):
        assert bad in line
    assert "data.train_size," not in line and "data.train_size (" not in line


def test_a_bad_value_is_named(tmp_path: Path, capsys):
    path = sweep_file(tmp_path, {"trainer.max_epochs": {"values": [1, "many"]}})
    assert main(["sweep", str(path), "--check"]) == 2
    line = one_error_line(capsys)
    assert "trainer.max_epochs" in line and "many" in line


def test_structure_errors(tmp_path: Path):
    cases = {
        "min (1) must be below max": {"parameters": {"a": {"min": 1, "max": 0}}},
        "grid needs values": {"parameters": {"a": {"distribution": "uniform", "min": 0, "max": 1}}},
        "unknown macro ${argz}": {"command": ["${env}", "${interpreter}", "-m", "vitlight", "fit", "${argz}"]},
        "runs no vitlight subcommand": {"command": ["python", "train.py", "${args}"]},
        "eta must be an integer": {"early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 1}},
        "run_cap must be a positive integer": {"run_cap": 0},
    }
    for expected, change in cases.items():
        raw = {
            "method": "grid",
            "metric": {"name": "test/acc"},
            "parameters": {"a": {"values": [1]}},
            "command": FIT,
            **change,
        }
        with pytest.raises(
            SweepSpecError,
            match=expected.replace("$", r"\$").replace("{", r"\{").replace("(", r"\(").replace(")", r"\)"),
        ):
            parse_spec(raw, tmp_path / "x.yaml")


def test_args_expand_like_the_wandb_agent(tmp_path: Path):
    raw = {
        "method": "random",
        "metric": {"name": "test/acc"},
        "program": "vitlight/__main__.py",
        "parameters": {
            "seed_everything": {"value": 3},
            "data.train_size": {"values": [16]},
            "model": {"parameters": {"optimizer": {"parameters": {"lr": {"value": 0.001}}}}},
        },
        "command": [
            "${env}",
            "${interpreter}",
            "${program}",
            "fit",
            "${args}",
            "${args_no_hyphens}",
            "${args_json}",
            "${args_json_file}",
        ],
    }
    spec = parse_spec(raw, tmp_path / "x.yaml")
    values = {p.path: p.examples()[0] for p in spec.parameters}
    argv = expand(spec, values, interpreter=sys.executable, json_file=tmp_path / "args.json")
    flags = [
        "--data.train_size=16",
        "--model={'optimizer': {'lr': 0.001}}",
        "--seed_everything=3",
    ]  # sorted by name, nested as a dict
    assert argv[:4] == ["/usr/bin/env", sys.executable, "vitlight/__main__.py", "fit"]
    assert argv[4:7] == flags
    assert argv[7:10] == [flag[2:] for flag in flags]
    assert json.loads(argv[10]) == {"data.train_size": 16, "model": {"optimizer": {"lr": 0.001}}, "seed_everything": 3}
    assert json.loads(Path(argv[11]).read_text()) == json.loads(argv[10])
    assert vitlight_arguments(spec, argv)[0] == "fit"


def test_distributions_map_onto_optuna(tmp_path: Path):
    raw = {
        "method": "random",
        "metric": {"name": "val/acc"},
        "command": FIT,
        "parameters": {
            "a": {"distribution": "q_uniform", "min": 0, "max": 10, "q": 2},
            "b": {"distribution": "log_uniform_values", "min": 1e-4, "max": 1e-2},
            "c": {"distribution": "normal", "mu": 5.0, "sigma": 0.001},
            "d": {"values": ["x", "y"], "probabilities": [0.0, 1.0]},
            "e": {"min": 1, "max": 3},
        },
        "early_terminate": {"type": "hyperband", "max_iter": 27, "s": 2, "eta": 3},
    }
    spec = parse_spec(raw, tmp_path / "x.yaml")
    by_name = {p.name: p for p in spec.parameters}
    assert space.value_of(by_name["a"], 4.9, "random") == 4
    assert space.search_space(spec)["b"].log
    assert abs(space.value_of(by_name["c"], 0.5, "random") - 5.0) < 1e-9
    assert space.value_of(by_name["d"], 0.3, "random") == "y"
    assert space.search_space(spec)["e"].high == 3
    assert spec.hyperband.min_iter == 3  # W&B: max_iter / eta**s
    pruner = space.pruner(spec)
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
    assert pruner._min_resource == 3 and pruner._reduction_factor == 3
