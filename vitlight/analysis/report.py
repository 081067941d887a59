"""The scaling-study report's data: runs -> accuracy against data and compute, and the ViT/CNN
crossover (vitlight.analysis.report_plots draws and writes it).

Runs are read from run folders (summary.json + config.yaml, found recursively, so a sweep
folder or a runs/ folder both work). Training compute is counted, not estimated: the FLOPs of
one training step (forward, loss, backward) of the run's own backbone on one image, counted
by torch.utils.flop_counter on the meta device with the math attention path
(vitlight.analysis.flops), times the images the run trained on.
"""

from __future__ import annotations

import functools
import json
import math
import re
import statistics
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

VIT_SIZES = {"tiny": "Ti", "small": "S", "base": "B", "large": "L", "huge": "H", "giant": "g"}
CNN_NAMES = {"resnetv2_50x1_bit": "BiT-R50x1", "resnetv2_101x1_bit": "BiT-R101x1", "resnetv2_50x3_bit": "BiT-R50x3"}


@dataclass
class RunRecord:
    run_dir: str
    experiment: str
    family: str
    kind: str  # "vit", "cnn" or "other"
    dataset: str
    train_size: int | None
    seed: int | None
    metrics: dict[str, float]
    model_name: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    cifar_stem: bool = False
    image_size: int | None = None
    num_classes: int | None = None
    channels: int = 3
    parameters: int | None = None
    images_seen: int | None = None
    flops_per_image: int | None = None
    wall_time_s: float | None = None
    subcommand: str = "fit"
    # transfer runs (fine-tune or linear probe from a vitlight run's checkpoint): the pretraining run
    pretrain_size: int | None = None
    pretrain_dataset: str | None = None
    pretrain_flops: float | None = None

    @property
    def is_transfer(self) -> bool:
        return self.pretrain_size is not None

    @property
    def axis_size(self) -> int | None:
        """The data size the study varies: the pretraining set for transfer runs, else the training set."""
        return self.pretrain_size if self.is_transfer else self.train_size

    @property
    def train_flops(self) -> float | None:
        """Compute that produced this result: its own training, plus its pretraining for transfer runs."""
        if self.flops_per_image is None or self.images_seen is None:
            return None
        own = float(self.flops_per_image) * self.images_seen
        if self.is_transfer:
            return own + self.pretrain_flops if self.pretrain_flops is not None else None
        return own


def family_of(model_name: str | None, model_kwargs: dict[str, Any] | None) -> tuple[str, str]:
    """(label, kind), e.g. vit_tiny_patch16_224 with patch_size 4 -> ("ViT-Ti/4", "vit");
    resnet18 -> ("ResNet-18", "cnn")."""
    name, kwargs = model_name or "?", dict(model_kwargs or {})
    vit = re.match(r"(vit|deit)_(tiny|small|base|large|huge|giant)_patch(\d+)", name)
    if vit:
        family = "DeiT" if vit.group(1) == "deit" else "ViT"
        label = f"{family}-{VIT_SIZES[vit.group(2)]}/{kwargs.get('patch_size', vit.group(3))}"
        custom = [
            f"{short}{kwargs[key]}"
            for key, short in (("embed_dim", "d"), ("depth", "L"), ("num_heads", "h"))
            if key in kwargs
        ]
        return (f"{label} ({' '.join(custom)})" if custom else label), "vit"
    if name in CNN_NAMES:
        return CNN_NAMES[name], "cnn"
    resnet = re.match(r"(resnext|resnet)(\d+)(\w*)$", name)
    if resnet:
        family = "ResNeXt" if resnet.group(1) == "resnext" else "ResNet"
        variant = f" {resnet.group(3).strip('_')}" if resnet.group(3) else ""
        label = f"{family}-{resnet.group(2)}{variant}"
        return label, "cnn"
    return name, "other"


@functools.cache
def flops_per_image(
    model_name: str,
    kwargs_json: str,
    cifar_stem: bool,
    image_size: int,
    num_classes: int,
    channels: int,
    frozen: bool = False,
) -> int:
    """Training-step FLOPs of one image through the run's backbone (built as vitlight builds it).

    A frozen backbone (linear probe) gets no backward pass: only its head's gradients are counted."""
    from vitlight.analysis.flops import count_training_flops
    from vitlight.tasks.backbones import apply_cifar_stem, create_backbone

    def build():
        model = create_backbone(model_name, num_classes, image_size, channels, json.loads(kwargs_json))
        if cifar_stem:
            apply_cifar_stem(model, channels)
        if frozen:
            model.requires_grad_(False)
            model.get_classifier().requires_grad_(True)
        return model

    # batch 2: batch norm needs two values per channel on a 1x1 map (ResNet-18 at 14 px)
    return count_training_flops(build, (2, channels, image_size, image_size)).train_step // 2


def images_seen(summary: dict[str, Any], config: dict[str, Any]) -> int | None:
    """Images trained on: optimizer steps x per-process batch x processes x accumulation, at most
    epochs x train_size (summaries before world_size was recorded count one process)."""
    steps, train_size = summary.get("global_step"), summary.get("train_size")
    batch = ((config.get("data") or {}).get("init_args") or {}).get("batch_size")
    if not isinstance(steps, int) or not isinstance(batch, int):
        return None
    accumulate = (config.get("trainer") or {}).get("accumulate_grad_batches") or 1
    world = summary.get("world_size") if isinstance(summary.get("world_size"), int) else 1
    seen = steps * batch * int(accumulate) * world
    epochs = summary.get("epochs")
    if isinstance(epochs, int) and epochs > 0 and isinstance(train_size, int):
        seen = min(seen, epochs * train_size)
    return seen


def _shared_tail(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    count = 0
    while count < min(len(a), len(b)) and a[-1 - count] == b[-1 - count]:
        count += 1
    return count


def pretraining_run(checkpoint_path: Any, search_root: Path | None = None) -> RunRecord | None:
    """The vitlight run that wrote `<run>/checkpoints/<name>.ckpt`, when its summary says it finished.

    A sweep folder that was moved or copied still links up: the run is then looked for by its
    `<experiment>/<run id>` folder under search_root."""
    if not isinstance(checkpoint_path, str) or not checkpoint_path:
        return None
    run = Path(checkpoint_path).parent.parent
    if not (run / "summary.json").is_file() and search_root is not None:
        moved = [p.parent for p in Path(search_root).rglob(f"{run.parent.name}/{run.name}/summary.json")]
        if moved:  # the candidate that shares the longest tail of folder names with the recorded path
            tails = [_shared_tail(candidate.parts, run.parts) for candidate in moved]
            if tails.count(max(tails)) == 1:
                run = moved[tails.index(max(tails))]
    try:
        summary = json.loads((run / "summary.json").read_text())
        config = yaml.safe_load((run / "config.yaml").read_text()) or {}
    except (OSError, ValueError, yaml.YAMLError):
        return None
    if summary.get("status") != "finished" or not isinstance(summary.get("train_size"), int):
        return None
    return record_from(summary, config, str(run), follow_checkpoint=False)


def record_from(
    summary: dict[str, Any],
    config: dict[str, Any],
    run_dir: str,
    follow_checkpoint: bool = True,
    search_root: Path | None = None,
) -> RunRecord:
    model_args = (config.get("model") or {}).get("init_args") or {}
    data = summary.get("data") or {}
    model = summary.get("model") or {}
    model_name = model.get("model_name") or model_args.get("model_name") or model_args.get("preset")
    kwargs = model_args.get("model_kwargs") or {}
    family, kind = family_of(model_name, kwargs)
    pretrained = pretraining_run(model_args.get("checkpoint_path"), search_root) if follow_checkpoint else None
    frozen = bool(model_args.get("freeze_backbone"))
    if pretrained is not None:
        family += f" {'linear probe' if frozen else 'fine-tuned'}, pretrained on {pretrained.dataset}"
    elif model_args.get("checkpoint_path") or frozen:
        family += " (from checkpoint, frozen)" if frozen else " (from checkpoint)"
    metrics = {}
    for section in (summary.get("best_validation"), summary.get("test"), summary.get("metrics")):
        metrics.update(
            {k: float(v) for k, v in (section or {}).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        )
    record = RunRecord(
        run_dir=run_dir,
        experiment=str(summary.get("experiment")),
        family=family,
        kind=kind,
        dataset=str(data.get("dataset") or "?"),
        train_size=summary.get("train_size"),
        seed=summary.get("seed"),
        metrics=metrics,
        model_name=model_name,
        model_kwargs=dict(kwargs),
        cifar_stem=bool(model_args.get("cifar_stem")),
        image_size=data.get("image_size"),
        num_classes=data.get("num_classes"),
        channels=int(data.get("channels") or 3),
        parameters=model.get("parameters"),
        images_seen=images_seen(summary, config),
        wall_time_s=summary.get("wall_time_s"),
        subcommand=str(summary.get("subcommand") or "fit"),
    )
    if record.model_name and kind != "other" and record.image_size and record.num_classes:
        try:
            record.flops_per_image = flops_per_image(
                record.model_name,
                json.dumps(record.model_kwargs, sort_keys=True),
                record.cifar_stem,
                int(record.image_size),
                int(record.num_classes),
                record.channels,
                frozen,
            )
        except Exception:  # a model the counter cannot build on the meta device: no compute axis for it
            record.flops_per_image = None
    if pretrained is not None:
        record.pretrain_size, record.pretrain_dataset, record.pretrain_flops = (
            pretrained.train_size,
            pretrained.dataset,
            pretrained.train_flops,
        )
    return record


def collect_runs(root: Path) -> tuple[list[RunRecord], list[str]]:
    """Finished runs under root (summary.json found recursively), and one line per run left out."""
    records, skipped = [], []
    for path in sorted(Path(root).rglob("summary.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as error:
            skipped.append(f"{path.parent}: unreadable summary.json ({error})")
            continue
        if summary.get("status") != "finished":
            skipped.append(f"{path.parent}: status {summary.get('status')!r}")
            continue
        if summary.get("subcommand") not in ("fit", "pipeline"):
            continue
        config_path = path.parent / "config.yaml"
        config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
        records.append(record_from(summary, config or {}, str(path.parent), search_root=Path(root)))
    return records, skipped


# ----- aggregation and the crossover --------------------------------------------------------
@dataclass
class Point:
    train_size: int
    mean: float
    std: float
    low: float
    high: float
    n: int
    flops: float | None


def aggregate(records: list[RunRecord], metric: str) -> dict[str, list[Point]]:
    """{family: points sorted by data size (pretraining size for transfer runs)}, mean and spread over seeds."""
    groups: dict[str, dict[int, list[RunRecord]]] = defaultdict(lambda: defaultdict(list))
    for record in records:
        if metric in record.metrics and isinstance(record.axis_size, int):
            groups[record.family][record.axis_size].append(record)
    result = {}
    for family, by_size in groups.items():
        points = []
        for size in sorted(by_size):
            values = [r.metrics[metric] for r in by_size[size]]
            flops = [r.train_flops for r in by_size[size] if r.train_flops is not None]
            points.append(
                Point(
                    size,
                    statistics.fmean(values),
                    statistics.stdev(values) if len(values) > 1 else 0.0,
                    min(values),
                    max(values),
                    len(values),
                    statistics.fmean(flops) if flops else None,
                )
            )
        result[family] = points
    return dict(sorted(result.items()))


@dataclass
class Crossover:
    vit: str
    cnn: str
    status: str  # "crosses", "ahead", "behind", "insufficient"
    size: float | None
    text: str


def crossover(
    vit_name: str, vit: dict[int, float], cnn_name: str, cnn: dict[int, float], unit: str = "training images"
) -> Crossover:
    """Where the ViT's mean overtakes the CNN's for good, interpolated linearly in log(data size)."""
    sizes = sorted(set(vit) & set(cnn))
    if not sizes:
        return Crossover(
            vit_name, cnn_name, "insufficient", None, f"{vit_name} and {cnn_name} share no data size ({unit})"
        )
    gaps = [vit[s] - cnn[s] for s in sizes]
    span = f"{sizes[0]:,}-{sizes[-1]:,} {unit}" if len(sizes) > 1 else f"{sizes[0]:,} {unit}"
    if all(g > 0 for g in gaps):
        return Crossover(
            vit_name, cnn_name, "ahead", None, f"{vit_name} is ahead of {cnn_name} at every size measured ({span})"
        )
    if gaps[-1] <= 0:
        ahead = [f"{s:,}" for s, g in zip(sizes, gaps) if g > 0]
        earlier = f"; ahead only at {', '.join(ahead)}, then behind" if ahead else ""
        return Crossover(
            vit_name,
            cnn_name,
            "behind",
            None,
            f"{vit_name} does not overtake {cnn_name} within {span} (gap at {sizes[-1]:,}: {100 * gaps[-1]:+.1f} "
            f"points{earlier})",
        )
    k = max(i for i, g in enumerate(gaps) if g <= 0) + 1  # ahead from sizes[k] on
    before, after = gaps[k - 1], gaps[k]
    t = before / (before - after)
    size = math.exp(math.log(sizes[k - 1]) + t * (math.log(sizes[k]) - math.log(sizes[k - 1])))
    return Crossover(
        vit_name,
        cnn_name,
        "crosses",
        size,
        f"{vit_name} overtakes {cnn_name} at about {size:,.0f} {unit} (between {sizes[k - 1]:,} and {sizes[k]:,}; "
        f"{100 * gaps[-1]:+.1f} points at {sizes[-1]:,})",
    )


def envelope(points: dict[str, list[Point]], families: list[str]) -> dict[int, float]:
    """The best mean of several families at each size all of them measured."""
    by_size = [{p.train_size: p.mean for p in points[f]} for f in families]
    common = set.intersection(*(set(b) for b in by_size)) if by_size else set()
    return {size: max(b[size] for b in by_size) for size in sorted(common)}


def crossovers(
    points: dict[str, list[Point]], kinds: dict[str, str], unit: str = "training images"
) -> tuple[Crossover | None, list[Crossover]]:
    """The headline (best ViT against best CNN) and every ViT/CNN pair; unit names what the sizes count."""
    vits = [f for f in points if kinds.get(f) == "vit"]
    cnns = [f for f in points if kinds.get(f) == "cnn"]
    pairs = [
        crossover(v, {p.train_size: p.mean for p in points[v]}, c, {p.train_size: p.mean for p in points[c]}, unit)
        for v in vits
        for c in cnns
    ]
    if not vits or not cnns:
        return None, pairs
    headline = crossover(
        f"ViT (best of {', '.join(vits)})",
        envelope(points, vits),
        f"ResNet (best of {', '.join(cnns)})",
        envelope(points, cnns),
        unit,
    )
    return headline, pairs


def size_unit(records: list[RunRecord]) -> str:
    """What the sizes count: pretraining images when every run is a transfer run, else training images."""
    return "pretraining images" if records and all(r.is_transfer for r in records) else "training images"


def size_label(records: list[RunRecord]) -> str:
    """The size axis's label; a mix of transfer and plain runs says which count is which."""
    mixed = size_unit(records) == "training images" and any(r.is_transfer for r in records)
    return "training images (pretraining images for transfer runs)" if mixed else size_unit(records)


def main_dataset(records: list[RunRecord]) -> str | None:
    """The dataset most runs trained on (the study's axis); other runs are listed, not plotted."""
    counts: dict[str, int] = defaultdict(int)
    for record in records:
        counts[record.dataset] += 1
    return max(counts, key=counts.get) if counts else None


def as_json(
    records: list[RunRecord], points: dict[str, list[Point]], headline: Crossover | None, pairs: list[Crossover]
) -> dict:
    return {
        "runs": [{**asdict(r), "train_flops": r.train_flops} for r in records],
        "points": {family: [asdict(p) for p in pts] for family, pts in points.items()},
        "crossover": asdict(headline) if headline else None,
        "pairs": [asdict(p) for p in pairs],
    }
