"""W&B sweep settings -> Optuna: search space, sampler and pruner.

Where the mapping is not one to one (also in docs/sweeps.md):
- grid: Optuna's GridSampler over every parameter's grid values (values, int_uniform range,
  q_uniform steps): the same set of runs as W&B's grid, visited in a seeded shuffled order
  (W&B walks the product in order).
- random: RandomSampler. W&B's `probabilities` (weighted categorical), normal, log-normal and
  beta distributions have no Optuna counterpart: they are searched as a quantile u in [0, 1)
  and turned into the value by the distribution's inverse CDF, which samples them exactly.
- bayes: W&B fits a Gaussian process with expected improvement; here Optuna's GPSampler
  (Gaussian process, log expected improvement), random for its first 3 trials.
  Quantile-mapped parameters are modelled in quantile space (as W&B's bayes does: it
  normalizes every parameter by its CDF). q_* distributions are searched continuously
  and rounded to q when the trial starts.
- hyperband: W&B stops a run whose metric, at a bracket min_iter * eta**k, is not in the top
  1/eta of the runs that reached that bracket, every run against every other: one asynchronous
  successive-halving schedule (ASHA). That is Optuna's SuccessiveHalvingPruner (min_resource =
  min_iter, reduction_factor = eta), not its HyperbandPruner, which runs several such schedules
  with different first rungs and splits the trials between them (with a few dozen trials it
  would compare almost none). A report is each per-epoch value of the metric (W&B counts each
  logged value as one iteration too). Not carried over: W&B's `strict`, and its last bracket at
  max_iter (Optuna keeps checking at min_iter * eta**k as long as the run reports).
"""

from __future__ import annotations

import json
import math
import statistics
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from vitlight.sweeps.spec import Parameter, SweepSpec, quantize

QUANTILE_DISTRIBUTIONS = ("normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta")
PRIMITIVE = (str, int, float, bool, type(None))
BAYES_STARTUP_TRIALS = 3  # W&B's bayes models the runs from the first few on; Optuna's default waits for 10


def encode(value: Any) -> Any:
    """Optuna's choices are None, bool, int, float or str: other values go as JSON text."""
    return value if isinstance(value, PRIMITIVE) else "json:" + json.dumps(value, sort_keys=True)


def decode_choice(value: Any) -> Any:
    return json.loads(value[5:]) if isinstance(value, str) and value.startswith("json:") else value


def _weighted(parameter: Parameter) -> bool:
    return parameter.is_categorical and "probabilities" in parameter.config


def distribution(parameter: Parameter, method: str) -> BaseDistribution | None:
    """The Optuna distribution a parameter is searched in (None for a constant)."""
    c, kind = parameter.config, parameter.distribution
    if parameter.is_constant:
        return None
    if method == "grid":
        return CategoricalDistribution([encode(v) for v in parameter.grid_values()])
    if _weighted(parameter) or kind in QUANTILE_DISTRIBUTIONS:
        return FloatDistribution(0.0, 1.0)
    if parameter.is_categorical:
        return CategoricalDistribution([encode(v) for v in c["values"]])
    if kind == "int_uniform":
        return IntDistribution(int(c["min"]), int(c["max"]))
    if kind in ("uniform", "q_uniform"):
        return FloatDistribution(float(c["min"]), float(c["max"]))
    if kind in ("log_uniform", "q_log_uniform"):  # W&B v1: min and max are natural-log exponents
        return FloatDistribution(math.exp(c["min"]), math.exp(c["max"]), log=True)
    if kind == "inv_log_uniform":  # 1/X log-uniform on [e^min, e^max] is X log-uniform on [e^-max, e^-min]
        return FloatDistribution(math.exp(-c["max"]), math.exp(-c["min"]), log=True)
    if kind in ("log_uniform_values", "inv_log_uniform_values", "q_log_uniform_values"):
        return FloatDistribution(float(c["min"]), float(c["max"]), log=True)
    raise ValueError(f"{parameter.name}: no Optuna mapping for {kind}")


def search_space(spec: SweepSpec) -> dict[str, BaseDistribution]:
    space = {}
    for parameter in spec.searched:
        found = distribution(parameter, spec.method)
        if found is not None:
            space[parameter.key] = found
    return space


def _inverse_cdf(parameter: Parameter, u: float) -> float:
    c, kind = parameter.config, parameter.distribution
    u = min(max(u, 1e-9), 1 - 1e-9)
    if kind in ("beta", "q_beta"):
        from scipy.stats import beta

        return float(beta.ppf(u, c["a"], c["b"]))
    normal = statistics.NormalDist(c["mu"], c["sigma"]).inv_cdf(u)
    return math.exp(normal) if "log_normal" in kind else normal


def value_of(parameter: Parameter, raw: Any, method: str) -> Any:
    """The value a trial gets, from what Optuna sampled."""
    c, kind = parameter.config, parameter.distribution
    if parameter.is_constant:
        return c["value"]
    if method == "grid" or (parameter.is_categorical and not _weighted(parameter)):
        return decode_choice(raw)
    if _weighted(parameter):
        total = 0.0
        for value, probability in zip(c["values"], c["probabilities"]):
            total += probability
            if raw < total:
                return value
        return c["values"][-1]
    value = _inverse_cdf(parameter, raw) if kind in QUANTILE_DISTRIBUTIONS else raw
    if kind.startswith("q_"):
        return quantize(value, c["q"])
    return int(value) if kind == "int_uniform" else float(value)


def trial_values(spec: SweepSpec, params: dict[str, Any]) -> dict[tuple[str, ...], Any]:
    """{path: value} of one trial, constants included."""
    return {p.path: value_of(p, params.get(p.key), spec.method) for p in spec.parameters}


class GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid, without its `study.stop()` when the grid is used up: that works only inside
    `study.optimize`, and the runner decides itself when a sweep is done (reruns included)."""

    def after_trial(self, study, trial, state, values) -> None:  # type: ignore[override]
        return None


def sampler(spec: SweepSpec, seed: int) -> optuna.samplers.BaseSampler:
    if spec.method == "grid":
        grid = {p.key: [encode(v) for v in p.grid_values()] for p in spec.searched}
        return GridSampler(grid, seed=seed)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    try:
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=BAYES_STARTUP_TRIALS)
    except ImportError:  # GPSampler needs scipy and torch; TPE is the fallback
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=BAYES_STARTUP_TRIALS, multivariate=True)


def pruner(spec: SweepSpec) -> optuna.pruners.BasePruner:
    band = spec.hyperband
    if band is None:
        return optuna.pruners.NopPruner()
    return optuna.pruners.SuccessiveHalvingPruner(
        min_resource=band.min_iter, reduction_factor=band.eta, min_early_stopping_rate=0
    )


def direction(spec: SweepSpec) -> str:
    return "maximize" if spec.goal == "maximize" else "minimize"
