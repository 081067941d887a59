"""`vitlight attention`: attention-rollout overlays of image files under a ViT/DeiT classifier checkpoint.

    vitlight attention --ckpt runs/vit_s4_cifar10/<run>/checkpoints/best-099.ckpt --images cat.png dog.jpg --out rollout/
    vitlight attention --ckpt CKPT --images *.png --out DIR --head_fusion max --discard_ratio 0.9

Each image gets the checkpoint's eval preprocessing (resize to the run's image size, its
channels, its normalization; from the data config stored in the checkpoint, `--data.key value`
overrides it). Writes `<out>/<image stem>_rollout.png` per image (a rerun replaces its own
outputs; nothing is written outside --out) and prints the predicted class and its probability.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from vitlight.analysis.attention_rollout import HEAD_FUSIONS
from vitlight.errors import ConfigError, DataError
from vitlight.tools.sample import _Parser, device_of, split_data_overrides

SUFFIX = "_rollout.png"
BATCH = 32


def parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="vitlight attention",
        description=__doc__.split("\n\n")[0],
        allow_abbrev=False,
        epilog="--data X and --data.key value override the checkpoint's data config (its eval preprocessing).",
    )
    p.add_argument("--ckpt", required=True, help="an ImageClassifier checkpoint of a ViT/DeiT with a class token")
    p.add_argument("--images", required=True, nargs="+", help="image files (any format PIL reads)")
    p.add_argument("--out", required=True, help="output folder (created if missing)")
    p.add_argument("--head_fusion", default="mean", choices=HEAD_FUSIONS, help="how attention heads are combined")
    p.add_argument(
        "--discard_ratio", type=float, default=0.0, help="fraction in [0, 1) of the weakest attention dropped per layer"
    )
    p.add_argument("--alpha", type=float, default=0.5, help="heatmap weight in the overlay, in [0, 1]")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    return p


# ----- checks that need no model --------------------------------------------------------
def check_images(names: list[str], out: Path) -> list[tuple[Path, Path]]:
    """(image file, overlay path) pairs; every image must exist and the overlay names must differ."""
    pairs, seen = [], {}
    for name in names:
        path = Path(name).expanduser()
        if not path.exists():
            raise DataError(f"image {name!r} does not exist")
        if not path.is_file():
            raise DataError(f"image {name!r} is not a file")
        target = out / f"{path.stem}{SUFFIX}"
        if target.name in seen:
            raise ConfigError(
                f"images {seen[target.name]!r} and {name!r} would both be written to {str(target)!r}; rename one or run them separately"
            )
        seen[target.name] = name
        pairs.append((path, target))
    return pairs


def check_out(name: str) -> Path:
    """The output folder; fails before any work when it could not be created or written (creates nothing)."""
    out = Path(name).expanduser()
    if out.exists() and not out.is_dir():
        raise ConfigError(f"the output folder --out {name!r} is a file, not a folder")
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"cannot create the output folder {name!r} ({str(existing)!r} is not a writable folder); set --out to a writable folder"
        )
    return out


def make_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"cannot create the output folder {str(out)!r} ({error.strerror or error}); set --out to a writable folder"
        ) from None


def write_png(array: np.ndarray, target: Path) -> None:
    """Writes through a temporary file in the same folder and renames it over `target`.

    The rename replaces a symlink at `target` rather than following it, so nothing lands outside --out.
    """
    if target.is_dir():
        raise ConfigError(f"cannot write {str(target)!r}: a folder of that name is in the way")
    try:
        handle, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".png.tmp")
    except OSError as error:
        raise ConfigError(
            f"cannot write into {str(target.parent)!r} ({error.strerror or error}); set --out to a writable folder"
        ) from None
    try:
        with os.fdopen(handle, "wb") as stream:
            Image.fromarray(array).save(stream, format="PNG")
        os.replace(temporary, target)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise ConfigError(f"cannot write {str(target)!r} ({error.strerror or error})") from None


# ----- the checkpoint's preprocessing ---------------------------------------------------
def load_datamodule(config: dict, overrides: list[str]):
    from vitlight.checkpoints import build_datamodule

    try:
        return build_datamodule(config.get("data"), overrides)
    except Exception as error:
        # jsonargparse wraps what a data module raises while it is instantiated
        cause: BaseException | None = error
        seen: set[int] = set()
        while cause is not None and not isinstance(cause, DataError) and id(cause) not in seen:
            seen.add(id(cause))
            cause = cause.__cause__ or cause.__context__
        if not isinstance(cause, DataError):
            raise
        raise DataError(
            f"{cause} (the eval preprocessing comes from the checkpoint's data config; "
            f"--data.data_dir DIR or --data OtherDataset points it elsewhere)"
        ) from None


def read_image(path: Path, channels: int | None = None) -> np.ndarray | None:
    """uint8 (H, W, channels) of one file; channels None only reads the header (returns None).

    A one-line DataError when PIL cannot read it.
    """
    from vitlight.data.decode import decode_image, header_size

    try:
        if channels is None:
            header_size(str(path))
            return None
        return decode_image(str(path), channels)
    except Exception as error:  # PIL raises OSError, ValueError, SyntaxError, DecompressionBombError, ...
        raise DataError(f"cannot read image {str(path)!r} ({type(error).__name__}: {error})") from None


def class_names(datamodule, count: int) -> list[str]:
    try:
        names = list(datamodule.classes)
    except Exception:  # a data module that needs its files to name the classes
        names = []
    return names if len(names) == count else [str(i) for i in range(count)]


def main(argv: list[str]) -> int:
    from vitlight.analysis.attention_callback import enlarge, rollout_backbone
    from vitlight.analysis.attention_rollout import attention_rollout
    from vitlight.analysis.overlay import overlay_heatmap
    from vitlight.checkpoints import load_module
    from vitlight.data.device import DeviceFinish
    from vitlight.data.transforms import Pipeline

    args, overrides = split_data_overrides(parser(), argv)
    if not 0.0 <= args.discard_ratio < 1.0:
        raise ConfigError(f"invalid --discard_ratio {args.discard_ratio}: it must be in [0, 1)")
    if not 0.0 <= args.alpha <= 1.0:
        raise ConfigError(f"invalid --alpha {args.alpha}: it must be in [0, 1]")
    pairs = check_images(args.images, Path(args.out).expanduser())
    for path, _ in pairs:  # headers only: fail before the model loads; pixels are decoded a batch at a time
        read_image(path)
    out = check_out(args.out)
    device = device_of(args.device)

    module, config = load_module(args.ckpt, map_location=device)
    if not hasattr(module, "backbone"):
        raise ConfigError(
            f"{args.ckpt!r} is a {type(module).__name__} checkpoint; vitlight attention needs an ImageClassifier (ViT/DeiT) one"
        )
    model = rollout_backbone(module)
    datamodule = load_datamodule(config, overrides)
    settings = datamodule.transform_settings
    trained_size = getattr(module.hparams, "image_size", None) if hasattr(module, "hparams") else None
    if trained_size is not None and trained_size != settings.image_size:
        raise ConfigError(
            f"the image size {settings.image_size} (--data.image_size) differs from the {trained_size} the checkpoint was trained at"
        )
    pipeline, finish = Pipeline(settings, train=False), DeviceFinish(settings, train=False)

    parameter = next(model.parameters())
    written = []
    for start in range(0, len(pairs), BATCH):
        chunk = [read_image(path, settings.channels) for path, _ in pairs[start : start + BATCH]]
        # uint8 (H, W, C) -> (C, H, W) -> resized (C, S, S), stacked to (B, C, S, S), normalized on the device
        batch = torch.stack(
            [pipeline.sample_stage(torch.from_numpy(a).permute(2, 0, 1).contiguous()[None])[0] for a in chunk]
        )
        batch = finish(batch.to(device)).to(dtype=parameter.dtype)
        try:
            maps = attention_rollout(model, batch, head_fusion=args.head_fusion, discard_ratio=args.discard_ratio)
        except ValueError as error:
            raise ConfigError(f"{args.ckpt!r}: {error}") from None
        with torch.no_grad():
            probabilities = module(batch).float().softmax(dim=-1).cpu()
        names = class_names(datamodule, probabilities.shape[-1])
        make_out(out)
        for (path, target), array, heat, row in zip(pairs[start : start + BATCH], chunk, maps.cpu(), probabilities):
            rgb = np.repeat(array, 3, axis=2) if array.shape[2] == 1 else array
            write_png(overlay_heatmap(enlarge(rgb), heat, alpha=args.alpha), target)
            top = int(row.argmax())
            print(f"{path}: {names[top]} {float(row[top]):.3f} -> {target}")
            written.append(target)
    print(f"wrote {len(written)} overlay(s) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
