"""The report of a pipeline sweep (`vitlight pipeline` trials, e.g. the ImageGPT scaling study).

Each finished pipeline's summary.json gives its metrics (`probe/test_acc`, `pretrain/test/...`)
and its pretraining stage's run folder, whose summary and config give the pretrained model's
parameters and its training compute: images trained on times the FLOPs of one training step on
one image, counted on the meta device (vitlight.analysis.flops) for ImageGPT presets and for timm
backbones. The report plots the chosen metric against parameters and against compute, one point
per pipeline, with a line through each pretraining set's points.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vitlight.analysis.report import _pyplot, flops_per_image, images_seen

PROBE_METRIC = "probe/test_acc"
PARAMETERS_PLOT = "probe_vs_parameters.png"
COMPUTE_PLOT = "probe_vs_compute.png"


@dataclass
class PipelineRecord:
    run_dir: str
    model: str
    parameters: int | None
    train_size: int | None
    seed: Any
    metrics: dict[str, float] = field(default_factory=dict)
    images_seen: int | None = None
    flops_per_image: int | None = None

    @property
    def compute(self) -> float | None:
        """Pretraining FLOPs (images trained on x one image's training step)."""
        if self.images_seen is None or self.flops_per_image is None:
            return None
        return float(self.images_seen) * self.flops_per_image


def _read(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    config_path = run_dir / "config.yaml"
    config = yaml.safe_load(config_path.read_text()) if config_path.is_file() else {}
    return summary, config or {}


def igpt_flops_per_image(model_args: dict[str, Any], image_size: int) -> int | None:
    """One training step's FLOPs on one image of an ImageGPT preset (forward, loss, backward), counted on meta."""
    import torch

    from vitlight.analysis.flops import train_step_flops
    from vitlight.models.igpt import IGPT_PRESETS, IGPTConfig, ImageGPT

    preset = model_args.get("preset") or "igpt-tiny"
    if preset not in IGPT_PRESETS:
        return None
    layers, width, heads = IGPT_PRESETS[preset]
    tokens = image_size * image_size
    config = IGPTConfig(
        vocab_size=int(model_args.get("palette_size") or 512),
        n_positions=int(model_args.get("n_positions") or tokens),
        n_layer=int(model_args.get("n_layer") or layers),
        n_embd=int(model_args.get("n_embd") or width),
        n_head=int(model_args.get("n_head") or heads),
        causal=model_args.get("objective", "autoregressive") == "autoregressive",
    )
    with torch.device("meta"):
        model = ImageGPT(config)
        example = torch.zeros(1, tokens, dtype=torch.long)
    return train_step_flops(model, example)


def _pretrain_compute(pretrain_dir: Path) -> tuple[int | None, int | None]:
    try:
        summary, config = _read(pretrain_dir)
    except (OSError, ValueError, yaml.YAMLError):
        return None, None
    model_args = (config.get("model") or {}).get("init_args") or {}
    data = summary.get("data") or {}
    image_size, classes = data.get("image_size"), data.get("num_classes")
    per_image = None
    try:
        if "preset" in model_args and image_size:
            per_image = igpt_flops_per_image(model_args, int(image_size))
        elif model_args.get("model_name") and image_size and classes:
            per_image = flops_per_image(
                model_args["model_name"],
                json.dumps(model_args.get("model_kwargs") or {}, sort_keys=True),
                bool(model_args.get("cifar_stem")),
                int(image_size),
                int(classes),
                int(data.get("channels") or 3),
                False,
            )
    except Exception:  # a model the counter cannot build on meta: no compute axis for it
        per_image = None
    return images_seen(summary, config), per_image


def collect_pipelines(root: Path) -> list[PipelineRecord]:
    """Every finished `vitlight pipeline` run below root."""
    records = []
    for path in sorted(Path(root).rglob("summary.json")):
        try:
            summary = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if summary.get("subcommand") != "pipeline" or summary.get("status") != "finished":
            continue
        model = summary.get("model") or {}
        pretrain_dir = ((summary.get("stages") or {}).get("pretrain") or {}).get("run_dir")
        seen, per_image = _pretrain_compute(Path(pretrain_dir)) if pretrain_dir else (None, None)
        metrics = {
            k: float(v)
            for k, v in (summary.get("metrics") or {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        records.append(
            PipelineRecord(
                run_dir=str(path.parent),
                model=str(model.get("model_name") or model.get("class") or "?"),
                parameters=model.get("parameters"),
                train_size=summary.get("train_size"),
                seed=summary.get("seed"),
                metrics=metrics,
                images_seen=seen,
                flops_per_image=per_image,
            )
        )
    return records


def _plot(records: list[PipelineRecord], metric: str, x_of, x_label: str, title: str, path: Path) -> Path:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.4, 4.4))
    for size in sorted({r.train_size for r in records}, key=lambda s: (s is None, s)):
        points = sorted(
            (x_of(r), r.metrics[metric], r.model)
            for r in records
            if r.train_size == size and metric in r.metrics and x_of(r)
        )
        if not points:
            continue
        xs, ys, names = zip(*points)
        axis.plot(xs, ys, marker="o", label=f"pretrained on {size} images" if size else "pipelines")
        for x, y, name in points:
            axis.annotate(name, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    axis.set_xscale("log")
    axis.set_xlabel(x_label)
    axis.set_ylabel(metric)
    axis.set_title(title, fontsize=10)
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def write_report(records: list[PipelineRecord], metric: str, title: str, out: Path, source: str) -> dict[str, Path]:
    """Writes the two plots, report.md and report.json into out; returns the plots."""
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "probe_vs_parameters": _plot(
            records, metric, lambda r: r.parameters, "parameters of the pretrained model", title, out / PARAMETERS_PLOT
        ),
        "probe_vs_compute": _plot(
            records, metric, lambda r: r.compute, "pretraining compute (FLOPs)", title, out / COMPUTE_PLOT
        ),
    }
    names = sorted({k for r in records for k in r.metrics})
    lines = [
        f"# {title}",
        "",
        f"{len(records)} finished pipelines under `{source}`; metric `{metric}`.",
        "",
        f"![{metric} against parameters]({PARAMETERS_PLOT})",
        f"![{metric} against compute]({COMPUTE_PLOT})",
        "",
        "| model | parameters | pretraining images | compute (FLOPs) | seed | " + " | ".join(names) + " |",
        "|---|---:|---:|---:|---:|" + "---:|" * len(names),
    ]
    for r in sorted(records, key=lambda r: (r.parameters or 0, r.train_size or 0, str(r.seed))):
        compute = f"{r.compute:.3g}" if r.compute else "-"
        cells = [f"{r.metrics[n]:.4f}" if n in r.metrics else "-" for n in names]
        lines.append(
            f"| {r.model} | {r.parameters or '-'} | {r.train_size or '-'} | {compute} | {r.seed} | "
            + " | ".join(cells)
            + " |"
        )
    (out / "report.md").write_text("\n".join(lines) + "\n")
    (out / "report.json").write_text(
        json.dumps(
            {"metric": metric, "pipelines": [{**asdict(r), "compute": r.compute} for r in records]},
            indent=2,
            default=str,
        )
    )
    return files
