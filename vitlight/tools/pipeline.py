"""`vitlight pipeline`: pretrain, then transfer: fine-tune, linear-probe and/or probe every layer.

    vitlight pipeline --pretrain experiments/vit_ti4_cifar10.yaml --pretrain.data.train_size=5000 \\
        --finetune experiments/vit_ti4_finetune_cifar100.yaml \\
        --linear_probe experiments/vit_ti4_linear_probe_cifar100.yaml
    vitlight pipeline --pretrain experiments/igpt_tiny_quickstart.yaml --probe all

The ViT paper's transfer protocol as one command, so that a sweep file can drive it: stage 1
is `vitlight fit` with the --pretrain config(s); its checkpoint (--checkpoint best, the one
vitlight tested, or last) starts each later stage. --finetune and --linear_probe are `vitlight
fit` configs (the linear probe's sets model.init_args.freeze_backbone); --probe LAYERS runs
`vitlight probe --ckpt CKPT --layers LAYERS` (logistic regression on each layer's features).
`--STAGE.KEY=VALUE` goes to that stage as `--KEY=VALUE` (`--probe.data.train_size=1000` ->
`--data.train_size 1000`); `--STAGE={...}` (a dict, as W&B passes nested parameters) sets
several keys at once; --seed N seeds every fit stage. Each stage writes its own run folder
under --runs_dir; the pipeline's run folder holds summary.json with every stage's results under
`stages` and their metrics flattened under `metrics` (`pretrain/test/acc`,
`finetune/test/acc`, `linear_probe/test/acc`, `probe/test_acc`, ...), which a sweep's
metric.name can name. The pipeline's metrics also go to a W&B run (offline without credentials).

Under `wandb agent` the pipeline's W&B run is the one the agent scheduled (WANDB_RUN_ID): it
carries the sweep's metric and config. The stages run with the agent's variables removed, so
they are runs of their own outside the sweep, in the same W&B group (the sweep's name with
--sweep_name, else the pipeline's run).
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vitlight.errors import ConfigError

FIT_STAGES = ("pretrain", "finetune", "linear_probe")
STAGES = (*FIT_STAGES, "probe")
CHECKPOINT_KEY = "--model.init_args.checkpoint_path"
# What `wandb agent` sets for the run it scheduled; a stage that saw them would join the sweep as another run.
# vitlight's sweep name likewise: a stage's run carries the sweep's group and tag, not its `sweep_name` config key.
AGENT_VARIABLES = ("WANDB_RUN_ID", "WANDB_SWEEP_ID", "WANDB_SWEEP_PARAM_PATH", "VITLIGHT_SWEEP_NAME")


@dataclass
class PipelineArgs:
    configs: dict[str, list[str]] = field(default_factory=dict)
    overrides: dict[str, list[str]] = field(default_factory=lambda: {stage: [] for stage in STAGES})
    probe_layers: str | None = None
    checkpoint: str = "best"
    runs_dir: str = "runs"
    experiment: str | None = None
    seed: int | None = None
    sweep_name: str | None = None


def _value_text(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def _flatten(prefix: str, value: Any) -> list[str]:
    """{'data': {'train_size': 5}} -> ['--data.train_size=5'] (lists and leaves become one flag)."""
    if isinstance(value, dict) and value:
        return [
            flag for key, inner in value.items() for flag in _flatten(f"{prefix}.{key}" if prefix else str(key), inner)
        ]
    return [f"--{prefix}={_value_text(value)}"]


def parse(argv: list[str]) -> PipelineArgs:
    """Own options and per-stage overrides; raises ConfigError naming a bad flag."""
    args = PipelineArgs()
    tokens = list(argv)
    while tokens:
        token = tokens.pop(0)
        if token in ("-h", "--help"):
            print(__doc__)
            raise SystemExit(0)
        if not token.startswith("--"):
            raise ConfigError(
                f"pipeline: unexpected argument {token!r}; flags look like --pretrain FILE or --pretrain.KEY=VALUE"
            )
        name, has_value, value = token[2:].partition("=")
        if not has_value:
            if not tokens:
                raise ConfigError(f"pipeline: --{name} needs a value")
            value = tokens.pop(0)
        stage, _, key = name.partition(".")
        if stage in STAGES and key:
            option = [f"--{key}={value}"] if stage in FIT_STAGES else [f"--{key}", value]
            args.overrides[stage] += option
        elif stage in FIT_STAGES and value.lstrip().startswith("{"):
            try:
                nested = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(f"pipeline: --{stage}={value!r} is neither a config file nor a mapping") from None
            args.overrides[stage] += _flatten("", nested)
        elif stage in FIT_STAGES:
            args.configs.setdefault(stage, []).append(value)
        elif name == "probe":
            args.probe_layers = value
        elif name == "checkpoint":
            if value not in ("best", "last"):
                raise ConfigError(f"pipeline: --checkpoint {value!r} must be best or last")
            args.checkpoint = value
        elif name in ("runs_dir", "experiment", "sweep_name"):
            setattr(args, name, value)
        elif name == "seed":
            try:
                args.seed = int(value)
            except ValueError:
                raise ConfigError(f"pipeline: --seed {value!r} must be an integer") from None
        else:
            valid = (
                "--pretrain, --finetune, --linear_probe (config files), --probe LAYERS, --STAGE.KEY=VALUE, "
                "--checkpoint, --seed, --runs_dir, --experiment, --sweep_name"
            )
            raise ConfigError(f"pipeline: unknown flag --{name}; valid: {valid}")
    if "pretrain" not in args.configs:
        raise ConfigError("pipeline: --pretrain CONFIG is required (the first stage's `vitlight fit` config)")
    for stage in ("finetune", "linear_probe"):
        if args.overrides[stage] and stage not in args.configs:
            raise ConfigError(f"pipeline: --{stage}.* overrides given but no --{stage} CONFIG")
    if args.overrides["probe"] and args.probe_layers is None:
        raise ConfigError("pipeline: --probe.* overrides given but no --probe LAYERS")
    return args


def fit_argv(args: PipelineArgs, stage: str, runs_dir: str, checkpoint: str | None) -> list[str]:
    argv = ["fit"]
    for config in args.configs[stage]:
        argv += ["--config", config]
    if checkpoint is not None:
        argv.append(f"{CHECKPOINT_KEY}={checkpoint}")
    if args.seed is not None:
        argv.append(f"--seed_everything={args.seed}")
    return argv + args.overrides[stage] + [f"--runs_dir={runs_dir}"]


def probe_argv(args: PipelineArgs, checkpoint: str, runs_dir: str) -> list[str]:
    return ["--ckpt", checkpoint, "--layers", str(args.probe_layers), *args.overrides["probe"], "--runs_dir", runs_dir]


def argument_problem(argv: list[str]) -> str | None:
    """None when every stage's arguments parse (checked with `vitlight fit`'s parser); else why not."""
    from vitlight.parse_check import fit_problem, short_reason

    try:
        args = parse(argv)
    except ConfigError as error:
        return short_reason(str(error))
    for stage in FIT_STAGES:
        if stage in args.configs:
            placeholder = None if stage == "pretrain" else "pretrain.ckpt"
            problem = fit_problem(fit_argv(args, stage, args.runs_dir, placeholder))
            if problem:
                return f"{stage} stage: {problem}"
    if args.probe_layers is not None:
        from vitlight.tools.probe import parser

        known, rest = parser().parse_known_args(probe_argv(args, "pretrain.ckpt", args.runs_dir))
        bad = [t for t in rest if t.startswith("-") and not (t == "--data" or t.startswith("--data."))]
        if bad:
            return f"probe stage: unknown flag {bad[0]}"
    return None


def _new_summaries(runs_dir: Path, before: set[Path]) -> list[Path]:
    return sorted((p for p in runs_dir.rglob("summary.json") if p not in before), key=lambda p: p.stat().st_mtime)


def _run_stage(name: str, call, runs_dir: Path) -> dict[str, Any]:
    """Runs one stage in this process; returns its summary.json (plus its run folder)."""
    before = set(runs_dir.rglob("summary.json")) if runs_dir.exists() else set()
    print(f"pipeline: stage {name}", file=sys.stderr, flush=True)
    argv, sys.argv = sys.argv, sys.argv[:1]  # the stage gets its own arguments, not the pipeline's
    try:
        code = call()
    finally:
        sys.argv = argv
    found = _new_summaries(runs_dir, before)
    if code not in (0, None) or not found:
        raise ConfigError(f"pipeline: stage {name} failed (exit code {code}); see its output above")
    summary = json.loads(found[-1].read_text())
    if summary.get("status", "finished") != "finished":
        raise ConfigError(f"pipeline: stage {name} ended with status {summary.get('status')!r}")
    return {**summary, "run_dir": str(found[-1].parent)}


def _checkpoint(summary: dict[str, Any], which: str) -> str:
    run_dir = Path(summary["run_dir"])
    tested = (summary.get("tested_checkpoint") or {}).get("path")
    path = Path(tested) if which == "best" and tested else run_dir / "checkpoints" / "last.ckpt"
    if not path.is_file():
        raise ConfigError(f"pipeline: the pretraining run {run_dir} left no {which} checkpoint ({path})")
    return str(path)


def _metrics(stage: str, summary: dict[str, Any]) -> dict[str, float]:
    metrics = {}
    for section in ("test", "best_validation"):
        for key, value in (summary.get(section) or {}).items():
            if isinstance(value, (int, float)):
                metrics[f"{stage}/{key}"] = float(value)
    if stage == "probe":
        best = summary.get("best") or {}
        for key in ("test_acc", "val_acc"):
            if isinstance(best.get(key), (int, float)):
                metrics[f"probe/{key}"] = float(best[key])
        metrics["probe/best_layer"] = float(summary.get("best_layer", -1))
    return metrics


def main(argv: list[str]) -> int:
    from vitlight.lightning_cli import run_lightning as vitlight_main
    from vitlight.logging_wandb import join_sweep, sweep_name
    from vitlight.runs import SUMMARY_FILE, RunFolder, new_run_id
    from vitlight.tools import probe

    started = time.time()
    args = parse(argv)
    runs_dir = Path(args.runs_dir).expanduser()
    experiment = args.experiment or f"pipeline_{Path(args.configs['pretrain'][0]).stem}"
    folder = RunFolder(runs_dir, experiment, new_run_id(), os.environ.get("WANDB_RUN_ID") or "")
    folder.check_writable()
    join_sweep(args.sweep_name or sweep_name())  # the stages' runs and the pipeline's share the sweep's group
    os.environ.setdefault("WANDB_RUN_GROUP", f"{experiment}/{folder.run_id}")
    agent = {name: os.environ.pop(name) for name in AGENT_VARIABLES if name in os.environ}
    stages: dict[str, dict[str, Any]] = {}
    status, error = "failed", None
    try:
        stages["pretrain"] = _run_stage(
            "pretrain", lambda: vitlight_main(fit_argv(args, "pretrain", str(runs_dir), None)), runs_dir
        )
        checkpoint = _checkpoint(stages["pretrain"], args.checkpoint)
        for stage in ("finetune", "linear_probe"):
            if stage in args.configs:
                stages[stage] = _run_stage(
                    stage, lambda s=stage: vitlight_main(fit_argv(args, s, str(runs_dir), checkpoint)), runs_dir
                )
        if args.probe_layers is not None:
            stages["probe"] = _run_stage(
                "probe", lambda: probe.main(probe_argv(args, checkpoint, str(runs_dir))), runs_dir
            )
        status = "finished"
    except ConfigError as failure:
        error = str(failure)
    finally:
        os.environ.update(agent)  # the pipeline's own run is the agent's
    metrics = {k: v for stage, summary in stages.items() for k, v in _metrics(stage, summary).items()}
    pretrain = stages.get("pretrain", {})
    summary = {
        "status": status,
        "subcommand": "pipeline",
        "experiment": experiment,
        "run_id": folder.run_id,
        "wandb_run_id": folder.wandb_id or None,
        "seed": args.seed if args.seed is not None else pretrain.get("seed"),
        "train_size": pretrain.get("train_size"),
        "data": pretrain.get("data"),
        "model": pretrain.get("model"),
        "metrics": metrics,
        "error": error,
        "stages": {
            name: {
                "run_dir": s["run_dir"],
                "experiment": s.get("experiment"),
                "status": s.get("status"),
                "data": s.get("data"),
                "model": s.get("model"),
            }
            for name, s in stages.items()
        },
        "wall_time_s": round(time.time() - started, 3),
    }
    folder.create()
    folder.write_summary(summary)
    used = _log_wandb(folder, experiment, summary, args.sweep_name or sweep_name(), nested_overrides(args))
    if used and used != folder.wandb_id:  # the id W&B gave the run (the agent's, or a new one)
        summary["wandb_run_id"] = used
        folder.write_summary(summary)
    print(
        f"pipeline {status}: "
        + ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items()))
        + f"; wrote {folder.path / SUMMARY_FILE}"
    )
    if error:
        raise ConfigError(error)
    return 0


def nested_overrides(args: PipelineArgs) -> dict[str, Any]:
    """The --STAGE.KEY=VALUE settings as nested config sections ({'pretrain': {'model': {'preset': 'igpt-tiny'}}}):
    dashboards address a nested key, not W&B's flat `pretrain.model.preset`."""
    sections: dict[str, Any] = {}
    for stage in FIT_STAGES:
        for flag in args.overrides[stage]:
            key, _, value = flag[2:].partition("=")
            node = sections.setdefault(stage, {})
            *parents, leaf = key.split(".")
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = _yaml_value(value)
    return sections


def _yaml_value(text: str) -> Any:
    """A flag's value as the stage's parser reads it (`8` an int, `igpt-tiny` a string); unreadable text as is."""
    try:
        return yaml.safe_load(text) if text else text
    except yaml.YAMLError:
        return text


def _log_wandb(
    folder, experiment: str, summary: dict[str, Any], sweep: str | None, stage_settings: dict[str, Any]
) -> str | None:
    """The pipeline's W&B run (under an agent, the agent's run): its stage settings, stages, seed, the pretraining
    set's size and the metrics. Returns its id."""
    from vitlight.logging_wandb import start_command_run

    config = {**stage_settings, "stages": summary["stages"], "seed": summary["seed"]}
    config.update({"sweep_name": sweep} if sweep else {})
    run = start_command_run(folder, experiment, "pipeline", config)
    if run is None:
        return None
    import wandb

    size = {"data/train_size": summary["train_size"]} if isinstance(summary.get("train_size"), int) else {}
    run.log({**summary["metrics"], **size})  # the row a dashboard's line plot against training-set size reads
    run.summary.update({"status": summary["status"], **summary["metrics"], **size})
    run_id = run.id
    run.finish(exit_code=0 if summary["status"] == "finished" else 1)
    wandb.teardown()
    return run_id


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
