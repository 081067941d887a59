"""`vitlight probe`: linear-probe accuracy of every chosen layer of a frozen checkpoint.

    vitlight probe --ckpt runs/igpt_tiny_quickstart/<run>/checkpoints/best-003.ckpt --layers all
    vitlight probe --ckpt CKPT --layers 0,2,-1 --data CIFAR10 --data.data_dir /data/cifar10 --data.train_size 10000

Works on iGPT (PixelPretrainer) and timm (ImageClassifier: ViT, CNN) checkpoints. Each layer's
features are average-pooled (or the class token with --pool cls), a multinomial logistic
regression is fitted by full-batch L-BFGS with the L2 strength chosen on the validation split,
and its test accuracy is reported. The best layer is the one with the best validation accuracy.
A logistic regression on the (palette-quantized, for iGPT) pixels themselves is the baseline.
Writes runs/<experiment>/<run id>/ with summary.json and probe_accuracy.png, logged to W&B
(offline without credentials; WANDB_MODE=disabled turns it off).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from vitlight.cli_errors import CommandParser
from vitlight.errors import ConfigError
from vitlight.tools.arguments import DATA_EPILOG, add_palette_and_device, device_of, split_data_overrides

log = logging.getLogger("vitlight")

PLOT_FILE = "probe_accuracy.png"


def parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="vitlight probe", description=__doc__.split("\n\n")[0], allow_abbrev=False, epilog=DATA_EPILOG
    )
    p.add_argument(
        "--ckpt",
        required=True,
        help=(
            "a vitlight checkpoint (PixelPretrainer or ImageClassifier), or OpenAI's ImageGPT: a transformers folder "
            "or openai/imagegpt-small|medium|large"
        ),
    )
    p.add_argument("--layers", default="all", help="all, middle, or block indices such as 0,3,-1")
    p.add_argument(
        "--pool", default="mean", choices=("mean", "cls"), help="average over positions, or the class token (ViT)"
    )
    p.add_argument(
        "--l2", default="1e-5,1e-4,1e-3,1e-2,1e-1,1", help="L2 strengths to choose from on the validation split"
    )
    p.add_argument("--max_iter", type=int, default=500, help="L-BFGS iterations per L2 strength")
    p.add_argument("--baseline", default="pixels", choices=("pixels", "none"), help="also probe the (quantized) pixels")
    p.add_argument("--batch_size", type=int, default=256, help="images per feature-extraction batch")
    p.add_argument("--runs_dir", default="runs", help="folder holding runs/<experiment>/<run id>/")
    p.add_argument("--experiment", default=None, help="experiment name (default: probe_<the checkpoint's experiment>)")
    add_palette_and_device(p)
    return p


def parse_layers(text: str) -> str | list[int]:
    text = text.strip()
    if text in ("all", "middle"):
        return text
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(
            f"probe layers {text!r} (--layers) must be all, middle, or comma-separated block indices such as 0,3,-1"
        ) from None


def parse_l2(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or any(v < 0 for v in values):
        raise ConfigError(
            f"L2 strengths {text!r} (--l2) must be comma-separated non-negative numbers such as 1e-4,1e-3"
        )
    return values


@torch.no_grad()
def extract(
    features, datamodule, split: str, layers: list[int], pixels: bool, batch_size: int, device: torch.device
) -> tuple[dict, torch.Tensor]:
    """{layer or 'pixels': (N, D) float32 on the CPU}, labels (N,) of a whole split."""
    loader = DataLoader(datamodule.dataset(split, train_transform=False), batch_size=batch_size, shuffle=False)
    out: dict[Any, list[torch.Tensor]] = {key: [] for key in [*layers, *(["pixels"] if pixels else [])]}
    labels = []
    for images, targets in loader:
        images = images.to(device)
        for index, value in features(images, layers).items():
            out[index].append(value.float().cpu())
        if pixels:
            out["pixels"].append(raw_pixels(features.module, images).cpu())
        labels.append(targets)
    return {key: torch.cat(values) for key, values in out.items()}, torch.cat(labels)


def raw_pixels(module, images: torch.Tensor) -> torch.Tensor:
    """The baseline's features (B, H*W*C): iGPT palette colours of the tokens, else the pixels themselves."""
    if hasattr(module, "tokenize"):
        side = images.shape[-1]
        return module.palette.dequantize(module.tokenize(images).cpu(), side, side).flatten(1).float()
    return images.flatten(
        1
    ).float()  # normalized pixels: an affine map of the raw ones, which the probe standardizes anyway


def accuracy_plot(rows: list[dict], baseline: dict | None, title: str, path: Path) -> Path:
    from vitlight.analysis.figure_plots import pyplot

    plt = pyplot()
    depth = [row["depth"] for row in rows]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(depth, [row["test_acc"] for row in rows], "o-", label="test")
    axis.plot(depth, [row["val_acc"] for row in rows], "s--", alpha=0.6, label="validation")
    if baseline is not None:
        axis.axhline(baseline["test_acc"], color="grey", linestyle=":", label=f"{baseline['name']} (test)")
    axis.set_xlabel("relative layer depth (block index + 1) / blocks")
    axis.set_ylabel("linear probe accuracy")
    axis.set_title(title, fontsize=9)
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def log_wandb(folder, experiment: str, summary: dict, plot: Path) -> str | None:
    """The probe's W&B run: its settings, the layer table and plot, the best layer. Returns the run's id."""
    from vitlight.logging_wandb import start_command_run

    config = {k: summary[k] for k in ("checkpoint", "layers_probed", "pool", "l2_grid", "data")}
    run = start_command_run(folder, experiment, "probe", config)
    if run is None:
        return None
    import wandb

    table = wandb.Table(columns=["layer", "depth", "val_acc", "test_acc", "l2"])
    for row in summary["layers"]:
        table.add_data(row["layer"], row["depth"], row["val_acc"], row["test_acc"], row["l2"])
    run.log({"probe/accuracy_vs_depth": wandb.Image(str(plot)), "probe/layers": table})
    run.summary.update(
        {
            "best_layer": summary["best_layer"],
            "best_test_acc": summary["best"]["test_acc"],
            **({"baseline_test_acc": summary["baseline"]["test_acc"]} if summary["baseline"] else {}),
        }
    )
    run_id = run.id
    run.finish()
    wandb.teardown()  # the next run in this process (a pipeline's own) reads the environment afresh
    return run_id


def main(argv: list[str]) -> int:
    from vitlight.data.from_config import build_datamodule
    from vitlight.runs import SUMMARY_FILE, RunFolder, git_commit, hardware, new_run_id, package_versions
    from vitlight.tasks.probe import LayerFeatures, fit_logistic_regression
    from vitlight.tools.load import load_for_tool, require_data

    started = time.time()
    args, overrides = split_data_overrides(parser(), argv)
    layers_wanted, l2_grid = parse_layers(args.layers), parse_l2(args.l2)
    device = device_of(args.device)
    require_data(args.ckpt, overrides, "vitlight probe")
    module, config = load_for_tool(args.ckpt, device)
    features = LayerFeatures(module, args.pool)
    layers = features.layer_indices(layers_wanted)
    datamodule = build_datamodule(config.get("data"), overrides)
    datamodule.setup()
    features.attach_data(datamodule, check_palette=args.palette == "check")
    experiment = args.experiment or f"probe_{config.get('experiment') or 'checkpoint'}"
    # W&B gives the run its id (a W&B agent's, if one started this); summary.json records the one it used
    folder = RunFolder(Path(args.runs_dir).expanduser(), experiment, new_run_id(), os.environ.get("WANDB_RUN_ID", ""))
    folder.check_writable()

    with_pixels = args.baseline == "pixels"
    data = {
        split: extract(features, datamodule, split, layers, with_pixels, args.batch_size, device)
        for split in ("train", "val", "test")
    }
    num_classes = datamodule.num_classes
    n = features.n_layers

    def probe(key) -> dict:
        (x_train, y_train), (x_val, y_val), (x_test, y_test) = (
            (data[s][0][key], data[s][1]) for s in ("train", "val", "test")
        )
        fit = fit_logistic_regression(x_train, y_train, x_val, y_val, num_classes, l2_grid, args.max_iter)
        return {
            "val_acc": round(fit.val_acc, 6),
            "test_acc": round(fit.accuracy(x_test.double(), y_test), 6),
            "l2": fit.l2,
            "train_acc": round(fit.accuracy(x_train.double(), y_train), 6),
            "features": int(x_train.shape[1]),
        }

    rows = []
    for layer in layers:
        rows.append({"layer": layer, "depth": round((layer + 1) / n, 4), **probe(layer)})
        print(
            f"layer {layer:3d}  val {rows[-1]['val_acc']:.4f}  test {rows[-1]['test_acc']:.4f}  (l2 "
            f"{rows[-1]['l2']:g})",
            flush=True,
        )
    baseline = None
    if with_pixels:
        name = "quantized pixels" if features.is_igpt else "pixels"
        baseline = {"name": name, **probe("pixels")}
        print(
            f"{name:>9}  val {baseline['val_acc']:.4f}  test {baseline['test_acc']:.4f}  (l2 {baseline['l2']:g})",
            flush=True,
        )
    best = max(rows, key=lambda row: (row["val_acc"], -row["layer"]))

    folder.path.mkdir(parents=True, exist_ok=True)
    title = f"{features.name} on {type(datamodule).__name__} ({len(data['train'][1])} train images)"
    plot = accuracy_plot(rows, baseline, title, folder.path / PLOT_FILE)
    summary = {
        "status": "finished",
        "subcommand": "probe",
        "experiment": experiment,
        "run_id": folder.run_id,
        "wandb_run_id": folder.wandb_id or None,
        "checkpoint": str(Path(args.ckpt).expanduser().resolve())
        if Path(args.ckpt).expanduser().exists()
        else args.ckpt,
        "model": {"class": type(module).__name__, "name": features.name, "layers": n},
        "data": datamodule.data_summary() if hasattr(datamodule, "data_summary") else {},
        "pool": args.pool,
        "l2_grid": l2_grid,
        "layers_probed": layers,
        "layers": rows,
        "best_layer": best["layer"],
        "best": best,
        "baseline": baseline,
        "plot": str(plot),
        "wall_time_s": round(time.time() - started, 3),
        "git_commit": git_commit(),
        "packages": package_versions(),
        "hardware": hardware(),
    }
    folder.write_summary(summary)
    used = log_wandb(folder, experiment, summary, plot)
    if used and used != summary["wandb_run_id"]:
        folder.write_summary({**summary, "wandb_run_id": used})
    print(
        f"best layer {best['layer']} (by validation): test accuracy {best['test_acc']:.4f}; wrote "
        f"{folder.path / SUMMARY_FILE} and {plot}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
