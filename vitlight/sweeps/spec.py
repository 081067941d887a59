"""Reading and checking a W&B sweep file (the format `wandb sweep FILE` takes).

Only the structure is checked here: method, metric, each parameter's distribution and
bounds, early termination, run cap, and the command's macros. Whether the parameter
names are keys that `vitlight` accepts is checked by vitlight.sweeps.keys, with the
command's own parser. Every problem found is collected, then reported in one line.

A parameter is a leaf of `parameters`; W&B's nested form
(`model: {parameters: {optimizer: {parameters: {lr: {...}}}}}`) gives the leaf the path
("model", "optimizer", "lr"), shown as `model.optimizer.lr`. A flat dotted name
(`model.optimizer.lr: {...}`) is one path element: W&B passes it as `--model.optimizer.lr=V`,
a nested one as `--model={'optimizer': {'lr': V}}`; vitlight's parser accepts both.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vitlight.errors import ConfigError
from vitlight.files import folder_name_problem

METHODS = ("grid", "random", "bayes")
GOALS = ("maximize", "minimize")
TOP_LEVEL_KEYS = (
    "program",
    "command",
    "method",
    "metric",
    "parameters",
    "early_terminate",
    "run_cap",
    "name",
    "description",
    "project",
    "entity",
    "controller",
    "job",
    "image_uri",
)
# distribution -> (required keys, optional keys with W&B's defaults)
DISTRIBUTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "constant": (("value",), {}),
    "categorical": (("values",), {}),
    "categorical_w": (("values", "probabilities"), {}),
    "int_uniform": (("min", "max"), {}),
    "uniform": (("min", "max"), {}),
    "q_uniform": (("min", "max"), {"q": 1.0}),
    "log_uniform": (("min", "max"), {}),
    "log_uniform_values": (("min", "max"), {}),
    "inv_log_uniform": (("min", "max"), {}),
    "inv_log_uniform_values": (("min", "max"), {}),
    "q_log_uniform": (("min", "max"), {"q": 1.0}),
    "q_log_uniform_values": (("min", "max"), {"q": 1.0}),
    "normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "log_normal": ((), {"mu": 0.0, "sigma": 1.0}),
    "q_log_normal": ((), {"mu": 0.0, "sigma": 1.0, "q": 1.0}),
    "beta": ((), {"a": 1.0, "b": 1.0}),
    "q_beta": ((), {"a": 1.0, "b": 1.0, "q": 1.0}),
}
PARAMETER_KEYS = {
    "distribution",
    "value",
    "values",
    "probabilities",
    "min",
    "max",
    "q",
    "mu",
    "sigma",
    "a",
    "b",
    "parameters",
}
# Macros of the agent's command line (wandb.wandb_agent / sdk.launch.sweeps.utils), plus ${envvar:NAME}.
MACROS = (
    "env",
    "interpreter",
    "program",
    "args",
    "args_no_hyphens",
    "args_json",
    "args_json_file",
    "args_no_boolean_flags",
    "args_no_equals",
    "args_append_hydra",
    "args_override_hydra",
)
MACRO = re.compile(r"^\$\{([A-Za-z_]+)(?::([A-Za-z0-9_]*))?\}$")
ENVVAR = re.compile(r"\$\{envvar:[A-Z0-9_]*\}")  # what W&B's agent expands, anywhere in a token
VITLIGHT_SUBCOMMANDS = ("fit", "pipeline")
SWEEP_NAME = "sweep_name"
HYPERBAND_KEYS = {"type", "min_iter", "max_iter", "s", "eta", "strict"}


class SweepSpecError(ConfigError):
    """A sweep file that cannot run; the message lists every problem found."""


@dataclass(frozen=True)
class Parameter:
    """One searched (or constant) leaf of `parameters`."""

    path: tuple[str, ...]
    distribution: str
    config: dict[str, Any]

    @property
    def name(self) -> str:
        return ".".join(self.path)

    @property
    def key(self) -> str:
        """The name the optimization engine stores it under (path elements joined by '/')."""
        return "/".join(self.path)

    @property
    def is_constant(self) -> bool:
        return self.distribution == "constant"

    @property
    def is_categorical(self) -> bool:
        return self.distribution in ("categorical", "categorical_w")

    @property
    def listed_values(self) -> list[Any] | None:
        """The values a constant or categorical parameter names; None for a distribution."""
        if self.is_constant:
            return [self.config["value"]]
        return list(self.config["values"]) if self.is_categorical else None

    def grid_values(self) -> list[Any]:
        """The values a grid visits: W&B's grid takes constants, categoricals, int_uniform and q_uniform."""
        c = self.config
        if self.listed_values is not None:
            return self.listed_values
        if self.distribution == "int_uniform":
            return list(range(int(c["min"]), int(c["max"]) + 1))
        if self.distribution == "q_uniform":
            count = int(math.floor((c["max"] - c["min"]) / c["q"] + 1e-9)) + 1
            return [quantize(c["min"] + i * c["q"], c["q"]) for i in range(count)]
        raise ValueError(f"{self.name}: {self.distribution} has no grid")

    def examples(self) -> list[Any]:
        """Values to check the key with: every categorical value, else the bounds of the range."""
        c = self.config
        if self.listed_values is not None:
            return self.listed_values
        if self.distribution == "int_uniform":
            return [int(c["min"]), int(c["max"])]
        if self.distribution in (
            "uniform",
            "q_uniform",
            "log_uniform_values",
            "inv_log_uniform_values",
            "q_log_uniform_values",
        ):
            return [float(c["min"]), float(c["max"])]
        if self.distribution in ("log_uniform", "q_log_uniform"):
            return [math.exp(c["min"]), math.exp(c["max"])]
        if self.distribution == "inv_log_uniform":
            return [math.exp(-c["max"]), math.exp(-c["min"])]
        if self.distribution in ("log_normal", "q_log_normal"):
            return [math.exp(c["mu"])]
        if self.distribution in ("beta", "q_beta"):
            return [0.5]
        return [float(c["mu"])]


@dataclass(frozen=True)
class Hyperband:
    """W&B's `early_terminate: {type: hyperband, min_iter | max_iter (+ s), eta, strict}`."""

    min_iter: int
    max_iter: int | None
    eta: int
    strict: bool


@dataclass(frozen=True)
class SweepSpec:
    path: Path
    name: str
    method: str
    metric: str
    goal: str
    parameters: tuple[Parameter, ...]
    command: tuple[str, ...]
    program: str | None
    hyperband: Hyperband | None
    run_cap: int | None
    project: str | None
    entity: str | None
    raw: dict[str, Any] = field(compare=False, repr=False)

    @property
    def searched(self) -> tuple[Parameter, ...]:
        return tuple(p for p in self.parameters if not p.is_constant)

    @property
    def subcommand(self) -> str:
        return next(token for token in self.command if token in VITLIGHT_SUBCOMMANDS)

    def grid_size(self) -> int:
        return math.prod(len(p.grid_values()) for p in self.parameters)

    def digest(self) -> str:
        """Identifies what is searched and how; resuming a sweep folder needs the same digest."""
        keys = ("method", "metric", "parameters", "command", "program", "early_terminate", "run_cap")
        text = json.dumps({k: self.raw.get(k) for k in keys}, sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:8]


def quantize(value: float, q: float) -> float | int:
    """W&B's rounding to a multiple of q (an integer when q is one)."""
    rounded = round(value / q) * q
    return int(round(rounded)) if float(q).is_integer() else float(f"{rounded:.12g}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _infer_distribution(config: dict[str, Any]) -> str | None:
    if "distribution" in config:
        return config["distribution"]
    if "value" in config:
        return "constant"
    if "values" in config:
        return "categorical"
    if "min" in config and "max" in config:
        both_int = all(isinstance(config[k], int) and not isinstance(config[k], bool) for k in ("min", "max"))
        return "int_uniform" if both_int else "uniform"
    if "mu" in config or "sigma" in config:
        return "normal"
    return None


def _check_parameter(name: str, distribution: str, config: dict[str, Any]) -> list[str]:
    if distribution not in DISTRIBUTIONS:
        return [f"parameter {name!r}: unknown distribution {distribution!r} (valid: {', '.join(DISTRIBUTIONS)})"]
    required, _ = DISTRIBUTIONS[distribution]
    missing = [key for key in required if key not in config]
    if missing:
        return [f"parameter {name!r}: distribution {distribution} needs {', '.join(missing)}"]
    c = config
    problems = []
    if distribution in ("categorical", "categorical_w"):
        if not isinstance(c["values"], list) or not c["values"]:
            return [f"parameter {name!r}: values must be a non-empty list"]
        if "probabilities" in c:
            p = c["probabilities"]
            if (
                not isinstance(p, list)
                or len(p) != len(c["values"])
                or not all(_number(x) and x >= 0 for x in p)
                or abs(sum(p) - 1) > 1e-6
            ):
                problems.append(
                    f"parameter {name!r}: probabilities must be one non-negative number per value, summing to 1"
                )
    for key in ("min", "max", "q", "mu", "sigma", "a", "b"):
        if key in c and not _number(c[key]):
            problems.append(f"parameter {name!r}: {key} must be a number, got {c[key]!r}")
    if problems:
        return problems
    if "min" in c and "max" in c and not c["min"] < c["max"]:
        problems.append(f"parameter {name!r}: min ({c['min']}) must be below max ({c['max']})")
    if distribution == "int_uniform" and not all(isinstance(c[k], int) for k in ("min", "max")):
        problems.append(f"parameter {name!r}: int_uniform needs integer min and max")
    if distribution.endswith("_values") and c.get("min", 1) <= 0:
        problems.append(f"parameter {name!r}: {distribution} needs min > 0 (got {c['min']})")
    for key in ("q", "sigma", "a", "b"):
        if key in c and c[key] <= 0:
            problems.append(f"parameter {name!r}: {key} must be positive (got {c[key]})")
    return problems


def _parameters(tree: Any, prefix: tuple[str, ...], problems: list[str]) -> list[Parameter]:
    where = ".".join(prefix) or "parameters"
    if not isinstance(tree, dict) or not tree:
        problems.append(f"{where}: parameters must be a non-empty mapping of names to settings")
        return []
    found = []
    for name, config in tree.items():
        path = (*prefix, str(name))
        dotted = ".".join(path)
        if not isinstance(config, dict):
            problems.append(
                f"parameter {dotted!r}: expected a mapping such as {{values: [...]}} or {{min: 0, max: 1}}, got "
                f"{config!r}"
            )
            continue
        unknown = sorted(set(config) - PARAMETER_KEYS)
        if unknown:
            problems.append(
                f"parameter {dotted!r}: unknown setting {', '.join(unknown)} (valid: "
                f"{', '.join(sorted(PARAMETER_KEYS))})"
            )
            continue
        if "parameters" in config and "distribution" not in config:
            found += _parameters(config["parameters"], path, problems)
            continue
        distribution = _infer_distribution(config)
        if distribution is None:
            problems.append(f"parameter {dotted!r}: no value, values, min/max or distribution")
            continue
        settings = {**DISTRIBUTIONS.get(distribution, ((), {}))[1], **config}
        settings.pop("distribution", None)
        issues = _check_parameter(dotted, distribution, settings)
        problems += issues
        if not issues:
            found.append(Parameter(path, distribution, settings))
    return found


def _hyperband(config: Any, problems: list[str]) -> Hyperband | None:
    if config is None:
        return None
    if not isinstance(config, dict) or config.get("type") != "hyperband":
        problems.append(f"early_terminate: only type hyperband exists, got {config!r}")
        return None
    unknown = sorted(set(config) - HYPERBAND_KEYS)
    if unknown:
        problems.append(
            f"early_terminate: unknown setting {', '.join(unknown)} (valid: {', '.join(sorted(HYPERBAND_KEYS))})"
        )
    eta = config.get("eta", 3)
    if not isinstance(eta, int) or eta < 2:
        problems.append(f"early_terminate: eta must be an integer of at least 2, got {eta!r}")
        return None
    min_iter, max_iter, s = config.get("min_iter"), config.get("max_iter"), config.get("s", 0)
    if min_iter is None and max_iter is None:
        problems.append("early_terminate: hyperband needs min_iter, or max_iter and s")
        return None
    for key, value in (("min_iter", min_iter), ("max_iter", max_iter), ("s", s)):
        if value is not None and (not isinstance(value, int) or value < 0 or (key != "s" and value < 1)):
            problems.append(f"early_terminate: {key} must be a positive integer, got {value!r}")
            return None
    if min_iter is None:  # W&B: the first bracket is max_iter / eta**s
        min_iter = max(1, int(max_iter // eta**s))
    return Hyperband(min_iter=int(min_iter), max_iter=max_iter, eta=eta, strict=bool(config.get("strict", False)))


def _command(raw: dict[str, Any], problems: list[str]) -> tuple[str, ...]:
    command = raw.get("command")
    if command is None:
        problems.append(
            "command: missing; a vitlight sweep says how to run a trial, e.g. [${env}, ${interpreter}, -m, vitlight, "
            "fit, --config, FILE, ${args}]"
        )
        return ()
    if not isinstance(command, list) or not all(isinstance(t, (str, int, float)) for t in command):
        problems.append("command: must be a list of strings")
        return ()
    tokens = tuple(str(t) for t in command)
    for token in tokens:
        match = MACRO.match(token)
        if ENVVAR.sub("", token).startswith("${") and (match is None or match.group(1) not in MACROS):
            problems.append(
                f"command: unknown macro {token} (valid: {', '.join('${' + m + '}' for m in MACROS)}, ${{envvar:NAME}})"
            )
    literal = [t for t in tokens if not t.startswith("${")]
    if not any(t in VITLIGHT_SUBCOMMANDS for t in literal):
        problems.append(
            f"command: runs no vitlight subcommand ({' or '.join(VITLIGHT_SUBCOMMANDS)}); e.g. [${{env}}, "
            f"${{interpreter}}, -m, vitlight, fit, --config, FILE, ${{args}}]"
        )
    if "${program}" in tokens and not raw.get("program"):
        problems.append("command: uses ${program} but the file sets no program")
    if not any(t.startswith("${args") for t in tokens) and raw.get("parameters"):
        problems.append("command: passes no ${args}, so the trials would not get the parameters")
    return tokens


def parse_spec(raw: Any, path: Path) -> SweepSpec:
    """Checks the structure of a sweep config; raises SweepSpecError listing every problem."""
    if not isinstance(raw, dict):
        raise SweepSpecError(f"{path}: a sweep file is a YAML mapping (program, method, metric, parameters, ...)")
    problems: list[str] = []
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        problems.append(f"unknown top-level key {', '.join(unknown)} (valid: {', '.join(TOP_LEVEL_KEYS)})")
    method = raw.get("method")
    if method not in METHODS:
        problems.append(f"method {method!r} is not one of {', '.join(METHODS)}")
    metric = raw.get("metric")
    metric_name, goal = "", "maximize"
    if not isinstance(metric, dict) or not isinstance(metric.get("name"), str) or not metric.get("name"):
        problems.append("metric: needs a name, e.g. {name: test/acc, goal: maximize}")
    else:
        metric_name, goal = metric["name"], metric.get("goal", "minimize")
        if goal not in GOALS:
            problems.append(f"metric: goal {goal!r} is not one of {', '.join(GOALS)}")
    parameters = _parameters(raw.get("parameters"), (), problems)
    names = [p.name for p in parameters]
    clashes = sorted({n for n in names if names.count(n) > 1})
    if clashes:
        problems.append(f"parameters given twice (nested and dotted): {', '.join(clashes)}")
    if method == "grid":
        gridded = ("constant", "categorical", "int_uniform", "q_uniform")
        no_grid = [p.name for p in parameters if p.distribution not in gridded or "probabilities" in p.config]
        if no_grid:  # W&B's grid takes plain values: no probabilities
            problems.append(f"grid needs values (without probabilities), value, int_uniform or q_uniform: {no_grid}")
    if method == "bayes" and not isinstance(metric, dict):
        problems.append("bayes needs a metric")
    hyperband = _hyperband(raw.get("early_terminate"), problems)
    run_cap = raw.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or isinstance(run_cap, bool) or run_cap < 1):
        problems.append(f"run_cap must be a positive integer, got {run_cap!r}")
    command = _command(raw, problems)
    name = str(raw.get("name") or path.stem)
    name_problem = folder_name_problem(name, "name")  # names the sweep's folder
    problems += [name_problem] if name_problem else []
    for parameter in parameters:  # the key dashboards select a sweep's runs by: W&B puts it in every run's config
        if parameter.name == SWEEP_NAME and parameter.listed_values != [name]:
            problems.append(f"parameter {SWEEP_NAME}: must be {{value: {name}}}, the sweep's name")
    if problems:
        raise SweepSpecError(f"{path}: " + "; ".join(problems))
    return SweepSpec(
        path=path,
        name=name,
        method=method,
        metric=metric_name,
        goal=goal,
        parameters=tuple(parameters),
        command=command,
        program=raw.get("program"),
        hyperband=hyperband,
        run_cap=run_cap,
        project=raw.get("project"),
        entity=raw.get("entity"),
        raw=raw,
    )


def load_spec(path: str | Path) -> SweepSpec:
    path = Path(path)
    if not path.is_file():
        raise SweepSpecError(f"sweep file {str(path)!r} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise SweepSpecError(f"{path}: not valid YAML{where}: {getattr(error, 'problem', None) or error}") from None
    return parse_spec(raw, path)
