"""`vitlight figures`: every lecture figure that applies to a checkpoint, as PNG with its numbers as JSON.

    vitlight figures --ckpt runs/vit_ti4_cifar10/<run>/checkpoints/best-002.ckpt --out figures/
    vitlight figures --ckpt vit_base_patch16_224.augreg_in21k --out fig7/ --data CIFAR10 --data.data_dir DIR
    vitlight figures --ckpt runs/igpt_tiny_quickstart/<run>/checkpoints/last.ckpt --out figures/
    vitlight figures --ckpt runs/sweeps/scaling_data_mini --out figures/

A ViT (vitlight checkpoint or timm model name): the ViT paper's Fig. 7, left (principal
components of the patch-embedding filters), centre (position-embedding similarity, one map per
patch position) and right (mean attention distance of every head against depth, on --n_images
test images), and attention-rollout overlays of the first --rollout_images of them. An ImageGPT:
a completion grid (original | top half | completions) and, when `vitlight probe` has a result
for the checkpoint, the probe accuracy by layer. A sweep folder: the report's scaling plots.
Also writes figures.json (what was drawn, what was skipped and why) and logs the figures to a
W&B run (offline without credentials, under OUT/wandb or --wandb_dir; WANDB_MODE=disabled
turns it off). A rerun replaces its own files; nothing is written outside --out.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

from vitlight.cli_errors import CommandParser
from vitlight.errors import ConfigError
from vitlight.tools.arguments import device_of, split_data_overrides
from vitlight.tools.figure_gallery import Gallery, rounded
from vitlight.tools.figures_igpt import draw_igpt

INDEX_NAME = "figures"
INDEX_FILE = f"{INDEX_NAME}.json"


def parser() -> argparse.ArgumentParser:
    p = CommandParser.from_docstring(
        "vitlight figures",
        __doc__,
        "\n--data X and --data.key value override the checkpoint's data config"
        " (a timm model needs them for the image figures).",
    )
    p.add_argument(
        "--ckpt",
        required=True,
        help="a vitlight .ckpt, a sweep folder, a timm model name, or an ImageGPT in transformers format",
    )
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--n_images", type=int, default=128, help="test images the attention distances are averaged over")
    p.add_argument("--rollout_images", type=int, default=8, help="test images shown with their attention rollout")
    p.add_argument("--components", type=int, default=28, help="principal components of the patch-embedding filters")
    p.add_argument("--completions", type=int, default=8, help="ImageGPT: test images to complete")
    p.add_argument("--samples", type=int, default=2, help="ImageGPT: completions per image")
    p.add_argument("--split", default="test", choices=("test", "val", "train"), help="split the images come from")
    p.add_argument(
        "--probe",
        default=None,
        help="ImageGPT: a `vitlight probe` summary.json (default: the newest for this checkpoint)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the completion draws")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    p.add_argument(
        "--wandb_dir", default=None, help="folder in which the W&B run makes its wandb/ folder (default: OUT)"
    )
    return p


# ----- a ViT ----------------------------------------------------------------------------
def _vit_data(source, overrides: list[str], model) -> tuple[Any, tuple, tuple]:
    """The data module for the image figures (None: none given for a timm model) and its (mean, std)."""
    from vitlight.data.from_config import build_datamodule
    from vitlight.tools.attention import load_datamodule

    if source.config:
        datamodule = load_datamodule(source.config, overrides)
        settings = datamodule.transform_settings
        trained = getattr(getattr(source.module, "hparams", None), "image_size", None)
        if trained is not None and trained != settings.image_size:
            raise ConfigError(
                f"the image size {settings.image_size} (--data.image_size) differs from the {trained} the checkpoint "
                "was trained at"
            )
        return datamodule, tuple(settings.mean), tuple(settings.std)
    cfg = getattr(model, "pretrained_cfg", None) or {}
    mean, std = tuple(cfg.get("mean", (0.5, 0.5, 0.5))), tuple(cfg.get("std", (0.5, 0.5, 0.5)))
    if not overrides:
        return None, mean, std
    if not any(o.startswith("--data.image_size") for o in overrides):
        overrides = [*overrides, "--data.image_size", str(int(model.patch_embed.img_size[0]))]
    return build_datamodule(None, overrides), mean, std


def draw_vit(source, args: argparse.Namespace, overrides: list[str], gallery: Gallery, device: torch.device) -> None:
    from vitlight.analysis import patch_embedding_pca, position_embedding_similarity
    from vitlight.analysis.embeddings import patch_grid, vit_of
    from vitlight.analysis.figure_plots import plot_components, plot_position_similarity

    model = vit_of(source.module)
    datamodule, mean, std = _vit_data(source, overrides, model)
    out = gallery.out
    components, explained = patch_embedding_pca(model, args.components)
    png = plot_components(
        components,
        explained,
        f"{source.label}: patch-embedding filters, first {len(components)} principal components",
        out / "patch_embedding_components.png",
    )
    gallery.add(
        "patch_embedding_components",
        png,
        {
            "what": "principal components of the patch-embedding filters, largest explained variance first",
            "layout": "components (k, C, P, P), unit-norm filter weights; explained_variance_ratio (k,)",
            "explained_variance_ratio": rounded(explained),
            "components": rounded(components),
        },
    )
    gallery.tables["explained_variance"] = (
        ["component", "explained_variance_ratio"],
        [[i, v] for i, v in enumerate(explained.tolist())],
    )
    try:
        similarity = position_embedding_similarity(model)
    except ValueError as error:
        gallery.skip("position_embedding_similarity", str(error))
    else:
        grid = patch_grid(model)
        png = plot_position_similarity(
            similarity,
            grid,
            f"{source.label}: position embedding similarity",
            out / "position_embedding_similarity.png",
        )
        gallery.add(
            "position_embedding_similarity",
            png,
            {
                "what": (
                    "cosine similarity of the position embeddings of every pair of patches (prefix tokens left out)"
                ),
                "layout": (
                    "similarity (N, N), N = rows * cols patches in raster order; row i reshaped to (rows, cols) is "
                    "patch i's map"
                ),
                "grid": list(grid),
                "similarity": rounded(similarity, 4),
            },
        )
    if datamodule is None:
        reason = "a timm model by name needs test images: add --data NAME --data.data_dir DIR"
        gallery.skip("mean_attention_distance", reason)
        gallery.skip("attention_rollout", reason)
        return
    _draw_vit_images(source, model, datamodule, mean, std, args, gallery, device)


def _draw_vit_images(
    source, model, datamodule, mean: tuple, std: tuple, args: argparse.Namespace, gallery: Gallery, device: torch.device
) -> None:
    from vitlight.analysis import attention_rollout, mean_attention_distance
    from vitlight.analysis.attention_callback import enlarge
    from vitlight.analysis.figure_plots import plot_attention_distance, tile_images
    from vitlight.analysis.model_input import model_input
    from vitlight.analysis.overlay import overlay_heatmap
    from vitlight.tasks.pixels import split_pixels
    from vitlight.tools.attention import class_names, write_png

    pixels, labels = split_pixels(
        datamodule, args.split, count=args.n_images
    )  # uint8 (n, S, S, C), spread over the split
    parameter = next(model.parameters())
    images = model_input(pixels, mean, std, channels_last=True).to(device=device, dtype=parameter.dtype)
    distance = mean_attention_distance(model, images)
    size = tuple(images.shape[-2:])
    png = plot_attention_distance(
        distance,
        size,
        f"{source.label}: {len(images)} {args.split} images",
        gallery.out / "mean_attention_distance.png",
    )
    gallery.add(
        "mean_attention_distance",
        png,
        {
            "what": (
                "attention-weighted distance between query and key patch centres, averaged over patch queries and "
                "images"
            ),
            "layout": "distance (depth, heads), input pixels",
            "image_size": list(size),
            "images": len(images),
            "patch_size": [int(p) for p in model.patch_embed.patch_size],
            "distance": rounded(distance, 3),
        },
    )
    gallery.tables["attention_distance"] = (
        ["layer", "head", "mean_attention_distance_px"],
        [[layer, h, v] for layer, row in enumerate(distance.tolist()) for h, v in enumerate(row)],
    )
    shown = images[: args.rollout_images]
    try:
        maps = attention_rollout(model, shown)
    except ValueError as error:
        gallery.skip("attention_rollout", str(error))
        return
    with torch.no_grad():
        probabilities = source.module(shown).float().softmax(dim=-1).cpu()
    names = (
        class_names(datamodule, probabilities.shape[-1])
        if source.config
        else [str(i) for i in range(probabilities.shape[-1])]
    )
    truth = class_names(datamodule, datamodule.num_classes)
    rgb = pixels[: len(shown)].numpy()
    rgb = rgb.repeat(3, axis=3) if rgb.shape[3] == 1 else rgb
    overlays = [overlay_heatmap(enlarge(image, 96), heat) for image, heat in zip(rgb, maps.cpu())]
    png = gallery.out / "attention_rollout.png"
    write_png(tile_images([enlarge(image, 96) for image in rgb] + overlays, columns=len(overlays)), png)
    rows = [
        {
            "label": truth[int(label)],
            "predicted": names[int(row.argmax())],
            "probability": round(float(row.max()), 4),
            "rollout": rounded(heat, 4),
        }
        for label, row, heat in zip(labels, probabilities, maps.cpu())
    ]
    gallery.add(
        "attention_rollout",
        png,
        {
            "what": (
                "attention rollout (Abnar & Zuidema 2020) of the class token: top row the images, bottom row the "
                "overlays"
            ),
            "layout": "per image: rollout (grid_h, grid_w), scaled to peak 1",
            "images": rows,
        },
    )


# ----- a sweep --------------------------------------------------------------------------
def draw_sweep(source, gallery: Gallery) -> None:
    from vitlight.analysis import report as rp
    from vitlight.analysis import report_plots

    records, _ = rp.collect_runs(source.folder)
    records = [r for r in records if r.subcommand == "fit"]
    dataset = rp.main_dataset(records) if records else None
    records = [r for r in records if r.dataset == dataset]
    metric = "test/acc"
    if not any(metric in r.metrics for r in records):
        raise ConfigError(
            f"--ckpt {str(source.folder)!r}: no finished `vitlight fit` run with {metric} in its summary.json"
        )
    points = rp.aggregate(records, metric)
    headline, pairs = rp.crossovers(points, {r.family: r.kind for r in records}, rp.size_unit(records))
    title = f"{source.label}: {metric} on {dataset}"
    report = rp.as_json(records, points, headline, pairs)
    for name, draw in (
        (
            "accuracy_vs_train_size",
            lambda p: report_plots.plot_accuracy_vs_data(points, metric, title, p, headline, records),
        ),
        ("accuracy_vs_compute", lambda p: report_plots.plot_accuracy_vs_compute(points, records, metric, title, p)),
    ):
        gallery.add(
            name,
            draw(gallery.out / f"{name}.png"),
            {"what": f"the scaling report's {name.replace('_', ' ')} plot", **report},
        )


# ----- W&B and the command --------------------------------------------------------------
def log_wandb(gallery: Gallery, label: str, wandb_dir: Path) -> str | None:
    from vitlight.logging_wandb import apply_wandb_mode

    mode, _ = apply_wandb_mode()
    if mode == "disabled" or not gallery.figures:
        return None
    import wandb

    wandb_dir.mkdir(parents=True, exist_ok=True)
    run = wandb.init(
        project="vitlight",
        dir=str(wandb_dir),
        job_type="figures",
        name=f"figures/{label}",
        mode=mode,
        config={"source": label, "figures": sorted(gallery.figures)},
    )
    media: dict[str, Any] = {
        f"figures/{name}": wandb.Image(str(gallery.out / files["png"])) for name, files in gallery.figures.items()
    }
    for name, (columns, rows) in gallery.tables.items():
        media[f"figures/{name}_table"] = wandb.Table(columns=columns, data=rows)
    run.log(media)
    run.finish()
    wandb.teardown()
    return mode


def main(argv: list[str]) -> int:
    from vitlight.tools.attention import check_out, make_out
    from vitlight.tools.figure_sources import resolve

    started = time.time()
    args, overrides = split_data_overrides(parser(), argv)
    for name in ("n_images", "rollout_images", "components", "completions", "samples"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name} must be at least 1, got {getattr(args, name)}")
    out = check_out(args.out)
    device = device_of(args.device)
    source = resolve(args.ckpt, device)
    if source.kind == "sweep" and overrides:
        raise ConfigError("--data options do not apply to a sweep folder; its runs carry their own data")
    make_out(out)
    gallery = Gallery(out)
    if source.kind == "vit":
        draw_vit(source, args, overrides, gallery, device)
    elif source.kind == "igpt":
        draw_igpt(source, args, overrides, gallery, device)
    else:
        draw_sweep(source, gallery)
    gallery.json(
        INDEX_NAME,
        {
            "source": args.ckpt,
            "kind": source.kind,
            "label": source.label,
            "figures": gallery.figures,
            "skipped": gallery.skipped,
            "wall_time_s": round(time.time() - started, 2),
        },
    )
    mode = log_wandb(gallery, source.label, Path(args.wandb_dir or out).expanduser())
    drawn = ", ".join(sorted(gallery.figures)) or "nothing"
    print(
        f"{source.kind}: wrote {drawn} (PNG + JSON) and {INDEX_FILE} to {out}"
        + (f"; W&B run ({mode}) under {Path(args.wandb_dir or out) / 'wandb'}" if mode else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
