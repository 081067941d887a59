"""`vitlight sweep FILE --estimate`: what a sweep costs, counted before anything trains.

Each trial's argv is expanded as the agent would and parsed by `vitlight fit`'s own parser
(nothing instantiated; a pipeline trial is split into its stages). Per stage: the FLOPs of one
image's training step and forward pass through the stage's model, counted on the meta device
(vitlight.analysis.flops), times the images the Trainer will train on (epochs, max_steps,
limit_train_batches, the train_size subset of the dataset's known size, the last short batch
dropped) and the images it will evaluate (validation at its interval, the test set once).
Hours = FLOPs / (device peak x MFU): the datasheet's dense bf16 peak (H200, A100) or this
CPU's measured fp32 matmul rate, times an assumed MFU, or both read from a bench/gpu.py result
file. Trials whose values differ only in a seed cost the same and are counted once.
Not counted: start-up, data decoding, max_time limits and hyperband's early stops (so a
bayes/random sweep's estimate is its run_cap trials run to the end, an upper bound).
"""

from __future__ import annotations

import functools
import importlib
import itertools
import json
import math
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vitlight.errors import ConfigError
from vitlight.sweeps.macros import expand, vitlight_arguments
from vitlight.sweeps.spec import SweepSpec

DEFAULT_MFU = 0.3  # small models at 32 px rarely fill a big GPU; measure yours with bench/gpu.py and pass --bench
DEVICES = {  # dense bf16 tensor-core datasheet peaks (FLOP/s), as bench/gpu_measure.py's table
    "h200": ("one NVIDIA H200", 989e12),
    "a100": ("one NVIDIA A100", 312e12),
}
# Stored training and test images of the datasets the sweep files use (validation is carved from train).
TRAIN_IMAGES = {
    "CIFAR10": 50_000,
    "CIFAR100": 50_000,
    "EmbeddedDigits": 4_000,
    "MNIST": 60_000,
    "FashionMNIST": 60_000,
    "SVHN": 73_257,
    "STL10": 5_000,
    "TinyImageNet": 100_000,
    "ImageNet": 1_281_167,
    "Imagenette": 9_469,
}
TEST_IMAGES = {
    "CIFAR10": 10_000,
    "CIFAR100": 10_000,
    "EmbeddedDigits": 1_000,
    "MNIST": 10_000,
    "FashionMNIST": 10_000,
    "SVHN": 26_032,
    "STL10": 8_000,
    "TinyImageNet": 10_000,
    "ImageNet": 50_000,
    "Imagenette": 3_925,
}
SEED_NAMES = re.compile(r"(^|\.)seed(_everything)?$")


@dataclass(frozen=True)
class StageCost:
    """One `vitlight fit` run (or a pipeline's probe) inside a trial."""

    stage: str
    model: str
    train_images: int  # images the optimizer steps see
    train_flops: float
    eval_flops: float


@dataclass(frozen=True)
class TrialCost:
    values: dict[str, Any]  # the trial's parameter values, seeds left out
    trials: int  # how many trials share this cost (one per seed)
    stages: tuple[StageCost, ...]

    @property
    def train_flops(self) -> float:
        return sum(s.train_flops for s in self.stages)

    @property
    def flops(self) -> float:
        return sum(s.train_flops + s.eval_flops for s in self.stages)


@dataclass(frozen=True)
class Rate:
    """Sustained FLOP/s of the device a sweep is estimated for."""

    device: str
    peak: float
    mfu: float
    source: str

    @property
    def flops_per_s(self) -> float:
        return self.peak * self.mfu


@dataclass(frozen=True)
class SweepEstimate:
    spec: SweepSpec
    costs: tuple[TrialCost, ...]

    @property
    def trials(self) -> int:
        return sum(c.trials for c in self.costs)

    @property
    def train_flops(self) -> float:
        return sum(c.train_flops * c.trials for c in self.costs)

    @property
    def flops(self) -> float:
        return sum(c.flops * c.trials for c in self.costs)

    def hours(self, rate: Rate) -> float:
        return self.flops / rate.flops_per_s / 3600


def device_rate(device: str = "h200", mfu: float | None = None, bench: str | Path | None = None) -> Rate:
    """Peak x MFU of `device`; a bench/gpu.py JSON result gives both (its chip, its median measured MFU)."""
    if mfu is not None and not 0 < mfu <= 1:
        raise ConfigError(f"sweep: --mfu must be in (0, 1], got {mfu}")
    if bench is not None:
        return _bench_rate(Path(bench), mfu)
    if device == "cpu":
        return Rate(
            "this CPU (fp32 matmul, measured now)",
            cpu_matmul_rate(),
            mfu or DEFAULT_MFU,
            "assumed MFU" if mfu is None else "--mfu",
        )
    if device not in DEVICES:
        raise ConfigError(f"sweep: --device {device!r} is not known; valid: {', '.join([*DEVICES, 'cpu'])}")
    name, peak = DEVICES[device]
    return Rate(name, peak, mfu or DEFAULT_MFU, "assumed MFU" if mfu is None else "--mfu")


def _bench_rate(path: Path, mfu: float | None) -> Rate:
    try:
        report = json.loads(path.read_text())
        ceilings, rows = report["ceilings"], report["rows"]
        gpu = report["environment"].get("gpu") or "CPU"
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"sweep: --bench {path} is not a bench/gpu.py JSON result ({error})") from None
    peak = ceilings.get("datasheet_tflops") or ceilings.get("matmul_tflops")
    measured = [
        r["mfu_datasheet"] if ceilings.get("datasheet_tflops") else r.get("mfu_matmul")
        for r in rows
        if r.get("status") == "ok" and (r.get("mfu_datasheet") or r.get("mfu_matmul"))
    ]
    if not peak or (mfu is None and not measured):
        raise ConfigError(f"sweep: --bench {path} has no peak or no measured MFU row; run bench/gpu.py on the device")
    source = "--mfu" if mfu is not None else f"median MFU of {len(measured)} rows of {path.name}"
    return Rate(f"one {gpu}", float(peak) * 1e12, mfu or statistics.median(measured), source)


def cpu_matmul_rate(size: int = 1024, seconds: float = 1.0) -> float:
    """This machine's fp32 matmul FLOP/s (bench/matmul.py's yardstick, shorter)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        count += 1
    return 2 * size**3 * count / (time.perf_counter() - start)


def trial_values(spec: SweepSpec) -> list[dict[tuple[str, ...], Any]]:
    """The values of every trial: the whole grid, or run_cap trials at each range's first example value."""
    if spec.method == "grid":
        names = [p.path for p in spec.parameters]
        return [dict(zip(names, combo)) for combo in itertools.product(*(p.grid_values() for p in spec.parameters))]
    if spec.run_cap is None:
        raise ConfigError(
            f"sweep: {spec.path} ({spec.method}) has no run_cap, so it never ends; add run_cap to estimate it"
        )
    return [{p.path: p.examples()[0] for p in spec.parameters}] * spec.run_cap


def estimate(spec: SweepSpec) -> SweepEstimate:
    """Counts every trial of the sweep (trials that differ only in a seed once)."""
    groups: dict[str, tuple[dict[tuple[str, ...], Any], int]] = {}
    for values in trial_values(spec):
        costly = {path: value for path, value in values.items() if not SEED_NAMES.search(".".join(path))}
        key = json.dumps({".".join(k): v for k, v in costly.items()}, sort_keys=True, default=str)
        groups[key] = (costly, groups.get(key, (costly, 0))[1] + 1)
    costs = []
    for costly, count in groups.values():
        argv = vitlight_arguments(spec, expand(spec, costly, interpreter=sys.executable))
        stages = _pipeline_stages(argv) if argv[0] == "pipeline" else (_fit_stage("fit", argv),)
        costs.append(TrialCost({".".join(k): v for k, v in costly.items()}, count, stages))
    return SweepEstimate(spec, tuple(costs))


def header_line(result: SweepEstimate, rate: Rate) -> str:
    """The line each sweep file's header carries (tests/sweeps/test_estimate.py checks it against the file)."""
    return (
        f"# Estimate (vitlight sweep --estimate): {result.trials} trials, {result.train_flops:.2e} training FLOPs "
        f"(+ {result.flops - result.train_flops:.1e} evaluating), {duration(result.hours(rate))} on {rate.device} "
        f"at {rate.mfu:.0%} MFU."
    )


def duration(hours: float) -> str:
    if hours >= 1:
        return f"{hours:.2f} h"
    return f"{hours * 60:.1f} min" if hours * 60 >= 1 else f"{hours * 3600:.0f} s"


def report_lines(result: SweepEstimate, rate: Rate) -> list[str]:
    lines = [
        f"{result.spec.path}: {result.trials} trials ({result.spec.method}), "
        f"{result.train_flops:.3g} training FLOPs + {result.flops - result.train_flops:.3g} evaluating"
    ]
    for cost in result.costs:
        shown = " ".join(
            f"{k}={Path(v).stem if isinstance(v, str) and v.endswith('.yaml') else v}" for k, v in cost.values.items()
        )
        times = f" x{cost.trials}" if cost.trials > 1 else ""
        each = duration(cost.flops / rate.flops_per_s / 3600)
        lines.append(f"  {shown or '(no parameters)'}{times}: {cost.train_flops:.3g} training FLOPs, {each} each")
        for stage in cost.stages:
            lines.append(
                f"      {stage.stage}: {stage.model}, {stage.train_images:,} images trained, "
                f"{stage.train_flops:.3g} + {stage.eval_flops:.3g} FLOPs"
            )
    lines.append(
        f"{rate.device}: {rate.peak / 1e12:.4g} TFLOP/s peak x {rate.mfu:.0%} MFU ({rate.source}) = "
        f"{rate.flops_per_s / 1e12:.3g} TFLOP/s -> {duration(result.hours(rate))} "
        "(start-up, data decoding and early stopping not counted)"
    )
    return lines


# ----- one stage -------------------------------------------------------------------------------


def _parse_fit(argv: list[str]) -> Any:
    from vitlight.parse_check import fit_parser, fit_problem

    problem = fit_problem(argv)
    if problem:
        raise ConfigError(f"sweep: cannot estimate `vitlight {' '.join(argv)}`: {problem}")
    return fit_parser().parse_args(argv)[argv[0]]


def _plain(value: Any) -> Any:
    """jsonargparse Namespaces -> dicts."""
    if hasattr(value, "as_dict"):
        return value.as_dict()
    return dict(value) if isinstance(value, dict) else value


def _data_facts(data: Any) -> tuple[type, dict[str, Any]]:
    module, _, name = str(data.class_path).rpartition(".")
    return getattr(importlib.import_module(module), name), _plain(data.init_args) or {}


@functools.cache
def _num_classes(data_class: type, args_json: str) -> int:
    try:
        return int(data_class(**json.loads(args_json)).num_classes)
    except Exception as error:  # a data module that needs its files for the class list
        raise ConfigError(
            f"sweep: cannot read the class count of {data_class.__name__} without its files ({error})"
        ) from None


@functools.cache
def _model_flops(
    model_name: str, kwargs_json: str, cifar_stem: bool, image_size: int, num_classes: int, channels: int, frozen: bool
) -> tuple[int, int]:
    """(train step, forward) FLOPs of one image through the classifier vitlight builds."""
    from vitlight.analysis.flops import count_training_flops
    from vitlight.tasks.backbones import apply_cifar_stem, create_backbone

    def build():
        model = create_backbone(model_name, num_classes, image_size, channels, json.loads(kwargs_json))
        if cifar_stem:
            apply_cifar_stem(model, channels)
        if frozen:  # a linear probe: only the head gets gradients
            model.requires_grad_(False)
            model.get_classifier().requires_grad_(True)
        return model

    count = count_training_flops(
        build, (2, channels, image_size, image_size)
    )  # 2: batch norm needs two values on a 1x1 map
    return count.train_step // 2, count.forward // 2


@functools.cache
def _igpt_flops(model_json: str, image_size: int) -> tuple[int, int]:
    from vitlight.analysis.pipeline_report import igpt_flops_per_image

    train = igpt_flops_per_image(json.loads(model_json), image_size)
    if train is None:
        raise ConfigError(f"sweep: cannot count the ImageGPT preset in {model_json}")
    return train, train // 3


def _count(value: Any, total: int) -> int:
    """Lightning's limit_*_batches: a fraction or a count of batches."""
    if value is None:
        return total
    return min(total, int(value)) if isinstance(value, int) or float(value) > 1 else int(total * float(value))


def _fit_stage(stage: str, argv: list[str]) -> StageCost:
    config = _parse_fit(argv)
    data_class, data = _data_facts(config.data)
    model = _plain(config.model.init_args) or {}
    trainer = config.trainer
    dataset = data_class.__name__
    if dataset not in TRAIN_IMAGES:
        raise ConfigError(f"sweep: no image count known for {dataset}; known: {', '.join(TRAIN_IMAGES)}")
    stored = TRAIN_IMAGES[dataset]
    val = (
        0
        if data_class.has_val_split
        else max(1, round(float(data.get("val_fraction") or 0) * stored))
        if data.get("val_fraction")
        else 0
    )
    pool = stored - val
    size = data.get("train_size")
    train = pool if size is None else (round(size * pool) if size <= 1 else int(size))
    own_size = model.get("image_size") if "preset" in model else None  # a classifier's image_size is linked from data
    image_size = int(data.get("image_size") or own_size or data_class.default_image_size)
    channels = int(data.get("channels") or data_class.default_channels)
    batch = int(data.get("batch_size") or 1)
    eval_batch = int(data.get("eval_batch_size") or batch)
    if "preset" in model:  # ImageGPT pixel pretraining
        label = f"{model['preset']} at {image_size}x{image_size}"
        step, forward = _igpt_flops(
            json.dumps({k: v for k, v in model.items() if isinstance(v, (int, float, str))}, sort_keys=True), image_size
        )
    else:
        classes = _num_classes(data_class, json.dumps({k: v for k, v in data.items() if k in ("data_dir",)}))
        kwargs = model.get("model_kwargs") or {}
        label = (
            f"{model.get('model_name')}{' ' + json.dumps(kwargs, sort_keys=True) if kwargs else ''} at {image_size} px"
        )
        step, forward = _model_flops(
            str(model.get("model_name")),
            json.dumps(kwargs, sort_keys=True),
            bool(model.get("cifar_stem")),
            image_size,
            classes,
            channels,
            bool(model.get("freeze_backbone")),
        )
    batches = _count(trainer.limit_train_batches, train // batch if train >= batch else 1)
    max_epochs = (
        trainer.max_epochs
        if trainer.max_epochs not in (None, -1)
        else (math.inf if trainer.max_steps not in (None, -1) else 1000)
    )
    total = batches * max_epochs
    if trainer.max_steps not in (None, -1):
        total = min(total, trainer.max_steps * int(trainer.accumulate_grad_batches or 1))
    total = int(total)
    epochs = total / max(batches, 1)
    if trainer.check_val_every_n_epoch is None and isinstance(trainer.val_check_interval, int):
        validations = total // max(trainer.val_check_interval, 1)
    else:
        validations = int(epochs // (trainer.check_val_every_n_epoch or 1))
    val_images = min(val, _count(trainer.limit_val_batches, math.ceil(val / eval_batch)) * eval_batch) if val else 0
    test_images = min(
        TEST_IMAGES[dataset],
        _count(trainer.limit_test_batches, math.ceil(TEST_IMAGES[dataset] / eval_batch)) * eval_batch,
    )
    images = total * batch
    return StageCost(
        stage, label, images, float(step) * images, float(forward) * (validations * val_images + test_images)
    )


def _pipeline_stages(argv: list[str]) -> tuple[StageCost, ...]:
    from vitlight.tools.pipeline import FIT_STAGES, fit_argv, parse

    args = parse(argv[1:])
    stages = []
    for stage in FIT_STAGES:
        if stage in args.configs:
            checkpoint = None if stage == "pretrain" else "pretrain.ckpt"
            stages.append(_fit_stage(stage, fit_argv(args, stage, args.runs_dir, checkpoint)))
    if args.probe_layers is not None:  # logistic regression on features: one forward of every train and test image
        pretrain = stages[0]
        forward = pretrain.train_flops / max(pretrain.train_images, 1) / 3  # a training step is about 3 forwards
        stages.append(StageCost("probe", f"features of {pretrain.model}", 0, 0.0, forward * _probe_images(args)))
    return tuple(stages)


def _probe_images(args: Any) -> int:
    """The probe's images: the pretraining data's train pool and test set (the probe reads the checkpoint's data)."""
    config = _parse_fit(
        ["fit", *sum((["--config", c] for c in args.configs["pretrain"]), []), *args.overrides["pretrain"]]
    )
    data_class, _ = _data_facts(config.data)
    return TRAIN_IMAGES.get(data_class.__name__, 0) + TEST_IMAGES.get(data_class.__name__, 0)
