"""`vitlight figures` for an ImageGPT: the completion grid and the probe accuracy by layer."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from vitlight.errors import ConfigError
from vitlight.tools.figure_gallery import Gallery


def draw_igpt(source, args: argparse.Namespace, overrides: list[str], gallery: Gallery, device: torch.device) -> None:
    from vitlight.data.from_config import build_datamodule
    from vitlight.tasks.igpt_callbacks import completion_grid
    from vitlight.tasks.pixels import split_pixels
    from vitlight.tools.attention import write_png
    from vitlight.tools.figure_sources import find_probe_summary

    module = source.module
    if not module.model.cfg.causal:
        gallery.skip("completions", "a BERT (masked) ImageGPT cannot complete images; it needs an autoregressive one")
    elif not source.config and not overrides:
        gallery.skip("completions", "this ImageGPT has no data config: add --data NAME --data.data_dir DIR")
    else:
        datamodule = build_datamodule(source.config.get("data"), overrides)
        datamodule.setup()
        module.attach_data(datamodule, check_palette=True)
        pixels, labels = split_pixels(datamodule, args.split, count=args.completions)
        generator = torch.Generator(device=device).manual_seed(args.seed)
        originals, halves, completions = module.complete(pixels, samples=args.samples, generator=generator)
        png = gallery.out / "completions.png"
        grid = completion_grid(originals, halves, completions)  # uint8 (H', W', C)
        write_png(grid[..., 0] if grid.shape[-1] == 1 else grid, png)
        gallery.add(
            "completions",
            png,
            {
                "what": (
                    "per row: the quantized original, its top half, then the model's completions of the bottom half"
                ),
                "layout": "rows = images; columns = original | top half | samples",
                "labels": labels.tolist(),
                "samples": args.samples,
                "seed": args.seed,
                "image_size": int(datamodule.image_size),
            },
        )
    summary_path = (
        find_probe_summary(source.checkpoint, args.probe) if source.checkpoint is not None or args.probe else None
    )
    if summary_path is None:
        gallery.skip(
            "probe_accuracy",
            "no `vitlight probe` result for this checkpoint (run `vitlight probe --ckpt CKPT`, or give --probe)",
        )
        return
    _draw_probe(summary_path, gallery)


def _draw_probe(summary_path: Path, gallery: Gallery) -> None:
    from vitlight.tools.probe import accuracy_plot

    try:
        summary = json.loads(summary_path.read_text())
        rows, baseline = summary["layers"], summary.get("baseline")
    except (OSError, ValueError, KeyError):
        raise ConfigError(f"{str(summary_path)!r} is not a `vitlight probe` summary.json (no 'layers')") from None
    title = f"linear probe accuracy by layer ({summary.get('model', {}).get('name', '?')})"
    png = accuracy_plot(rows, baseline, title, gallery.out / "probe_accuracy.png")
    gallery.add(
        "probe_accuracy",
        png,
        {
            "what": "linear-probe accuracy of each block's features",
            "source": str(summary_path),
            "layers": rows,
            "baseline": baseline,
            "best_layer": summary.get("best_layer"),
        },
    )
    gallery.tables["probe"] = (
        ["layer", "depth", "val_acc", "test_acc"],
        [[r["layer"], r["depth"], r["val_acc"], r["test_acc"]] for r in rows],
    )
