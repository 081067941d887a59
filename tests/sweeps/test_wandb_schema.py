"""Every sweep file is one that both W&B controllers accept: the cloud and `wandb sweep --controller`.

W&B validates a sweep config in its `sweeps` package (`schema_violations_from_proposed_config`),
which `wandb` imports only for the local controller; `wandb` itself ships no validator, and the
`sweeps` package pins numpy<2, which would break this environment. When it can be imported it is
used; otherwise each file is checked against the facts of W&B's published sweep-config schema
(the JSON schema of wandb/sweeps, `config/schema.json`, draft-07), written out below.
On top of the schema: no nested `parameters:` blocks, because the local controller drops them
("Need at least one searchable parameter"), so every name is flat and dotted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))

# --- facts of W&B's published schema ----------------------------------------------------------
TOP_LEVEL = {
    "apiVersion",
    "kind",
    "controller",
    "description",
    "program",
    "job",
    "image_uri",
    "entity",
    "project",
    "method",
    "command",
    "name",
    "run_cap",
    "metric",
    "metrics",
    "scheduler",
    "early_terminate",
    "parameters",
}
METHODS = {"bayes", "random", "grid", "custom"}
METRIC_KEYS = {"name", "goal", "target", "impute", "impute_while_running"}
PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
HYPERBAND_KEYS = {"type", "max_iter", "min_iter", "s", "eta", "strict"}
NUMBER = (int, float)
# distribution -> (required keys, allowed keys); every form has additionalProperties false.
# A form whose distribution has a default may leave `distribution` out (categorical, constant,
# int_uniform, uniform); the others must name it.
FORMS: dict[str, tuple[set[str], set[str]]] = {
    "categorical": ({"values"}, {"values", "distribution"}),
    "categorical_w_probabilities": (
        {"values", "probabilities", "distribution"},
        {"values", "probabilities", "distribution"},
    ),
    "constant": ({"value"}, {"value", "distribution"}),
    "int_uniform": ({"min", "max"}, {"min", "max", "distribution"}),
    "uniform": ({"min", "max"}, {"min", "max", "distribution"}),
    "normal": ({"distribution"}, {"distribution", "mu", "sigma"}),
    "log_normal": ({"distribution"}, {"distribution", "mu", "sigma"}),
    "q_normal": ({"distribution"}, {"distribution", "mu", "sigma", "q"}),
    "q_log_normal": ({"distribution"}, {"distribution", "mu", "sigma", "q"}),
    "log_uniform": ({"distribution", "min", "max"}, {"distribution", "min", "max"}),
    "log_uniform_values": ({"distribution", "min", "max"}, {"distribution", "min", "max"}),
    "inv_log_uniform": ({"distribution", "min", "max"}, {"distribution", "min", "max"}),
    "inv_log_uniform_values": ({"distribution", "min", "max"}, {"distribution", "min", "max"}),
    "q_uniform": ({"distribution", "min", "max"}, {"distribution", "min", "max", "q"}),
    "q_log_uniform": ({"distribution", "min", "max"}, {"distribution", "min", "max", "q"}),
    "q_log_uniform_values": ({"distribution", "min", "max"}, {"distribution", "min", "max", "q"}),
    "beta": ({"distribution"}, {"distribution", "a", "b"}),
    "q_beta": ({"distribution"}, {"distribution", "a", "b", "q"}),
}
DEFAULT_DISTRIBUTIONS = {"categorical", "constant", "int_uniform", "uniform"}


def _is_number(value: Any) -> bool:
    return isinstance(value, NUMBER) and not isinstance(value, bool)


def _form_problems(form: str, config: dict[str, Any]) -> list[str]:
    required, allowed = FORMS[form]
    problems = [f"missing {key}" for key in sorted(required - set(config))]
    problems += [f"{key} not allowed" for key in sorted(set(config) - allowed)]
    if "distribution" in config and config["distribution"] != form:
        problems.append("other distribution")
    if "distribution" not in config and form not in DEFAULT_DISTRIBUTIONS:
        problems.append("distribution must be named")
    if problems:
        return problems
    if form == "int_uniform" and not all(
        isinstance(config[k], int) and not isinstance(config[k], bool) for k in ("min", "max")
    ):
        problems.append("int_uniform needs integer min and max")
    if form in ("categorical", "categorical_w_probabilities") and (
        not isinstance(config["values"], list) or not config["values"]
    ):
        problems.append("values must be a non-empty list")
    for key in ("min", "max", "mu", "sigma", "q", "a", "b"):
        if key in config and not _is_number(config[key]):
            problems.append(f"{key} must be a number")
    if form.endswith("_values") and _is_number(config.get("min")) and not config["min"] > 0:
        problems.append("min must be > 0")
    if _is_number(config.get("q")) and not config["q"] > 0:
        problems.append("q must be > 0")
    return problems


def schema_violations(config: dict[str, Any]) -> list[str]:
    """Violations of W&B's published sweep-config schema (plus: no nested parameter blocks)."""
    violations = [f"unknown top-level key {key!r}" for key in sorted(set(config) - TOP_LEVEL)]
    if config.get("method") not in METHODS:
        violations.append(f"method {config.get('method')!r} is not one of {sorted(METHODS)}")
    metric = config.get("metric")
    if metric is not None:
        if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
            violations.append("metric needs a string name")
        else:
            violations += [f"metric: unknown key {k!r}" for k in sorted(set(metric) - METRIC_KEYS)]
            if metric.get("goal", "minimize") not in ("minimize", "maximize"):
                violations.append(f"metric goal {metric.get('goal')!r}")
    run_cap = config.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or isinstance(run_cap, bool) or run_cap <= 0):
        violations.append("run_cap must be an integer > 0")
    for key in ("command",):
        if key in config and not isinstance(config[key], list):
            violations.append(f"{key} must be an array")
    for key in ("program", "name", "description", "project", "entity"):
        if key in config and not isinstance(config[key], str):
            violations.append(f"{key} must be a string")
    stop = config.get("early_terminate")
    if stop is not None:
        if not isinstance(stop, dict) or stop.get("type") != "hyperband":
            violations.append("early_terminate must be {type: hyperband, ...}")
        else:
            violations += [f"early_terminate: unknown key {k!r}" for k in sorted(set(stop) - HYPERBAND_KEYS)]
            has_min = isinstance(stop.get("min_iter"), int) and stop["min_iter"] >= 1
            has_max = isinstance(stop.get("max_iter"), int) and _is_number(stop.get("s"))
            if not (has_min or has_max):
                violations.append("early_terminate needs min_iter >= 1, or max_iter and s")
            if "eta" in stop and not (_is_number(stop["eta"]) and stop["eta"] > 1):
                violations.append("early_terminate: eta must be a number > 1")
    parameters = config.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, dict) or not parameters:
            violations.append("parameters must be a non-empty mapping")
            return violations
        for name, setting in parameters.items():
            if not PARAMETER_NAME.match(str(name)):
                violations.append(f"parameter name {name!r} does not match {PARAMETER_NAME.pattern}")
            if not isinstance(setting, dict):
                violations.append(f"parameter {name!r} is not a mapping")
            elif "parameters" in setting:
                violations.append(
                    f"parameter {name!r} is a nested block, which `wandb sweep --controller` drops; use flat dotted "
                    "names"
                )
            elif not any(not _form_problems(form, setting) for form in FORMS):
                violations.append(f"parameter {name!r} matches no distribution form: {setting}")
    return violations


def wandb_validator():
    """W&B's own validator where it imports without breaking the environment (the `sweeps` package), else None."""
    try:
        from sweeps import schema_violations_from_proposed_config  # type: ignore[import-not-found]
    except ImportError:
        return None
    return schema_violations_from_proposed_config


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_sweep_file_is_accepted_by_both_wandb_controllers(path: Path):
    config = yaml.safe_load(path.read_text())
    assert schema_violations(config) == []
    validator = wandb_validator()
    if validator is not None:
        assert list(validator(config)) == []
    names = list(config["parameters"])
    assert all(not isinstance(v, dict) or "parameters" not in v for v in config["parameters"].values()), names


BAD_CONFIGS = {
    "nested block": ({"parameters": {"model": {"parameters": {"lr": {"min": 0.1, "max": 1.0}}}}}, "nested block"),
    "name with a space": ({"parameters": {"model lr": {"values": [1]}}}, "does not match"),
    "unknown setting": ({"parameters": {"lr": {"min": 0.1, "max": 1.0, "step": 2}}}, "matches no distribution"),
    "log values from zero": (
        {"parameters": {"lr": {"distribution": "log_uniform_values", "min": 0, "max": 1}}},
        "matches no distribution",
    ),
    "unnamed log distribution": ({"parameters": {"lr": {"mu": 0, "sigma": 1}}}, "matches no distribution"),
    "unknown top-level key": ({"parameters": {"lr": {"values": [1]}}, "image": "x"}, "unknown top-level key"),
    "hyperband without min_iter": (
        {"parameters": {"lr": {"values": [1]}}, "early_terminate": {"type": "hyperband", "eta": 3}},
        "min_iter",
    ),
    "eta of 1": (
        {"parameters": {"lr": {"values": [1]}}, "early_terminate": {"type": "hyperband", "min_iter": 1, "eta": 1}},
        "eta",
    ),
    "run_cap 0": ({"parameters": {"lr": {"values": [1]}}, "run_cap": 0}, "run_cap"),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_the_schema_check_rejects(case: str):
    change, fragment = BAD_CONFIGS[case]
    config = {"method": "random", "metric": {"name": "val/acc", "goal": "maximize"}, "command": ["x"], **change}
    violations = schema_violations(config)
    assert any(fragment in v for v in violations), violations


def test_flat_names_reach_vitlight_as_the_agent_passes_them():
    """W&B's agent passes a flat dotted name as `--model.optimizer.lr=V`; vitlight's parser takes it."""
    from vitlight.parse_check import fit_problem

    argv = [
        "fit",
        "--config",
        str(ROOT / "experiments" / "vit_ti4_cifar10.yaml"),
        "--model.optimizer.lr=0.001",
        "--model.optimizer.weight_decay=0.01",
        "--model.lr_scheduler.warmup_fraction=0.1",
    ]
    assert fit_problem(argv) is None


# --- vitlight's own check (`vitlight sweep --check`) against W&B ------------------------------------------------
VALID = {
    "method": "grid",
    "metric": {"name": "test/acc", "goal": "maximize"},
    "parameters": {"seed_everything": {"values": [0, 1]}},
    "command": ["${env}", "${interpreter}", "-m", "vitlight", "fit", "${args}"],
}
REFUSED_BY_WANDB = {  # change -> what vitlight says
    "an image key (W&B's schema has image_uri)": ({"image": "x"}, "unknown top-level key image"),
    "a grid over values with probabilities (W&B's grid takes plain values)": (
        {"parameters": {"seed_everything": {"values": [0, 1], "probabilities": [0.5, 0.5]}}},
        "grid needs values (without probabilities)",
    ),
}


def test_vitlight_accepts_only_top_level_keys_of_wandbs_schema():
    from vitlight.sweeps.spec import TOP_LEVEL_KEYS

    assert set(TOP_LEVEL_KEYS) <= TOP_LEVEL


@pytest.mark.parametrize("case", list(REFUSED_BY_WANDB))
def test_vitlight_refuses_what_wandb_refuses(case: str, tmp_path: Path):
    from vitlight.sweeps.spec import SweepSpecError, parse_spec

    change, message = REFUSED_BY_WANDB[case]
    raw = {**VALID, **change}
    if "image" in change:
        assert any("image" in v for v in schema_violations(raw))
    with pytest.raises(SweepSpecError, match=re.escape(message)):
        parse_spec(raw, tmp_path / "x.yaml")


def agent_command(command: list, args: dict, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The command line wandb's own agent builds for one run (`Agent._command_run`), with the process not started."""
    from wandb import wandb_agent

    started: list[list[str]] = []

    class Recorder:
        def __init__(self, command=None, **kwargs):
            started.append(command)

    monkeypatch.setattr(wandb_agent, "AgentProcess", Recorder)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SWEEP_ID", "sw1")
    agent = wandb_agent.Agent(api=None, queue=None, sweep_id="sw1")
    agent._sweep_command = list(command)
    agent._command_run({"run_id": "run1", "program": "vitlight/__main__.py", "args": args})
    return started[0]


@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_trials_get_the_command_wandbs_agent_builds(path: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """For every sweep file, with a token holding ${envvar:...} added (set and unset): the offline engine's argv is
    the agent's, `python` aside."""
    from vitlight.sweeps.macros import expand, nest
    from vitlight.sweeps.spec import parse_spec

    raw = yaml.safe_load(path.read_text())
    monkeypatch.setenv("DATA_HOME", "/data")
    raw["command"] = [*raw["command"], "--runs_dir=${envvar:DATA_HOME}/runs", "--x=${envvar:UNSET_NAME}"]
    spec = parse_spec(raw, path)
    values = {p.path: p.examples()[0] for p in spec.parameters}
    ours = expand(spec, values, interpreter="python")
    args = {name: {"value": value} for name, value in nest(values).items()}
    theirs = agent_command(raw["command"], args, monkeypatch, tmp_path)
    assert ours == theirs
    assert ours[-2:] == ["--runs_dir=/data/runs", "--x=UNSET_NAME"]  # W&B leaves an unset variable's name
