"""`vitlight sample`: complete the bottom half of held-out images with an autoregressive iGPT checkpoint.

    vitlight sample --ckpt runs/igpt_tiny_quickstart/<run>/checkpoints/best-000.ckpt --n 16 --out samples/
    vitlight sample --ckpt CKPT --top_k 32 --temperature 0.9 --data CIFAR10 --data.data_dir /data/cifar10

The data comes from the config stored in the checkpoint unless `--data ...` overrides it;
writes `<out>/completions.png`: per row the quantized original, its top half, and completions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vitlight.cli_errors import CommandParser
from vitlight.errors import ConfigError
from vitlight.tools.arguments import DATA_EPILOG, add_palette_and_device, device_of, split_data_overrides


def default_out(checkpoint: str) -> Path:
    """<run folder>/samples for a checkpoint inside runs/<experiment>/<run>/checkpoints/, else ./samples."""
    path = Path(checkpoint).expanduser().resolve()
    return path.parent.parent / "samples" if path.parent.name == "checkpoints" else Path("samples")


def parser() -> argparse.ArgumentParser:
    p = CommandParser(
        prog="vitlight sample", description=__doc__.split("\n\n")[0], allow_abbrev=False, epilog=DATA_EPILOG
    )
    p.add_argument(
        "--ckpt",
        required=True,
        help=(
            "an autoregressive PixelPretrainer checkpoint, or OpenAI's ImageGPT: a transformers folder or "
            "openai/imagegpt-small|medium|large"
        ),
    )
    p.add_argument("--n", type=int, default=16, help="images to complete, spread evenly over the split")
    p.add_argument("--out", default=None, help="output folder (default: the run's samples/ folder)")
    p.add_argument("--split", default="test", choices=("test", "val", "train"), help="split the images come from")
    p.add_argument("--samples", type=int, default=1, help="completions per image")
    p.add_argument("--rows", type=int, default=None, help="rows given to the model (default: the top half)")
    p.add_argument(
        "--temperature", type=float, default=1.0, help="sampling temperature; 0 picks the most likely colour"
    )
    p.add_argument("--top_k", type=int, default=None, help="sample among the k most likely colours (1..palette size)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling draws")
    add_palette_and_device(p)
    return p


def main(argv: list[str]) -> int:
    from vitlight.data.from_config import build_datamodule
    from vitlight.tasks.igpt_callbacks import completion_grid, save_png
    from vitlight.tasks.pixels import split_pixels
    from vitlight.tools.load import load_for_tool, require_data

    args, overrides = split_data_overrides(parser(), argv)
    if args.n < 1 or args.samples < 1:
        raise ConfigError(
            f"the number of images (--n {args.n}) and of completions (--samples {args.samples}) must be at least 1"
        )
    device = device_of(args.device)
    require_data(args.ckpt, overrides, "vitlight sample")
    module, config = load_for_tool(args.ckpt, device)
    if not hasattr(module, "complete"):
        raise ConfigError(
            f"{args.ckpt!r} is a {type(module).__name__} checkpoint; vitlight sample needs an ImageGPT "
            "(PixelPretrainer) one"
        )
    if not module.model.cfg.causal:
        raise ConfigError(
            f"{args.ckpt!r} is a BERT iGPT (objective 'bert'); completing images needs an autoregressive one"
        )
    size = module.palette.size
    if args.top_k is not None and not 1 <= args.top_k <= size:
        raise ConfigError(f"top_k={args.top_k} (--top_k) must be between 1 and the checkpoint's palette size {size}")
    if args.temperature < 0:
        raise ConfigError(
            f"temperature (--temperature) must be >= 0 (0: the most likely colour), got {args.temperature}"
        )
    datamodule = build_datamodule(config.get("data"), overrides)
    datamodule.setup()
    module.attach_data(datamodule, check_palette=args.palette == "check")
    height = datamodule.image_size
    if args.rows is not None and not 0 <= args.rows < height:
        raise ConfigError(f"rows={args.rows} (--rows) must be between 0 and {height - 1} for {height}x{height} images")
    pixels, _ = split_pixels(datamodule, args.split, count=args.n)
    generator = torch.Generator(device=device).manual_seed(args.seed)
    grid = completion_grid(
        *module.complete(
            pixels,
            rows=args.rows,
            samples=args.samples,
            temperature=args.temperature,
            top_k=args.top_k,
            generator=generator,
        )
    )
    out = Path(args.out).expanduser() if args.out else default_out(args.ckpt)
    path = save_png(grid, out / "completions.png")
    print(f"wrote {path} ({len(pixels)} images: quantized original | top half | {args.samples} completion(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
