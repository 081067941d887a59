"""What `vitlight figures --ckpt X` draws from: a vitlight checkpoint, a sweep folder, or a model by name.

vitlight checkpoint (.ckpt)      ImageClassifier with a timm ViT -> "vit"; PixelPretrainer -> "igpt"
folder with run summaries       a sweep or runs folder -> "sweep" (the report's scaling plots)
timm model name                 e.g. vit_base_patch16_224.augreg_in21k: timm.create_model(name, pretrained=True)
ImageGPT in transformers format a folder with config.json of model_type imagegpt, or openai/imagegpt-*:
                                through PixelPretrainer.from_transformers
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from vitlight.errors import CheckpointError, ConfigError

TRANSFORMERS_IGPT_PREFIX = "openai/imagegpt"


@dataclass
class FigureSource:
    """kind: vit, igpt or sweep. module: the LightningModule (checkpoint) or bare model (by name)."""

    kind: str
    label: str
    module: nn.Module | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the run config of a vitlight checkpoint
    folder: Path | None = None  # a sweep folder
    checkpoint: Path | None = None


def is_vit(model: nn.Module) -> bool:
    """A timm VisionTransformer-like model: blocks with attention and a linear patch embedding."""
    from vitlight.analysis.embeddings import vit_of

    inner = vit_of(model)
    return hasattr(inner, "blocks") and hasattr(getattr(inner, "patch_embed", None), "proj")


def _transformers_folder(path: Path) -> bool:
    config = path / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text()).get("model_type") == "imagegpt"
    except (OSError, ValueError):
        return False


def load_transformers_igpt(source: str, device) -> FigureSource:
    """OpenAI's ImageGPT in Hugging Face transformers format (a folder, or openai/imagegpt-* on a
    connected machine), as a PixelPretrainer with its weights and palette."""
    from vitlight.tasks.pixel_pretrain import PixelPretrainer

    module = PixelPretrainer.from_transformers(source)
    return FigureSource("igpt", f"ImageGPT {source}", module=module.to(device).eval())


def load_timm(name: str, device) -> FigureSource:
    """A timm model with its pretrained weights (needs the internet or the Hugging Face cache)."""
    import timm

    quiet = logging.getLogger("timm")
    level = quiet.level
    quiet.setLevel(logging.WARNING)  # its "Loading pretrained weights" line would precede our one-line error
    try:
        model = timm.create_model(name, pretrained=True)
    except Exception as error:
        first = (str(error).splitlines() or [""])[0].split(". ")[0][:160]
        raise ConfigError(
            f"--ckpt {name!r}: cannot load timm's pretrained weights ({type(error).__name__}: {first}); "
            f"they are downloaded from the Hugging Face hub, so this needs the internet or a filled HF cache"
        ) from None
    finally:
        quiet.setLevel(level)
    if not is_vit(model):
        raise ConfigError(
            f"--ckpt {name!r} is a {type(model).__name__}; the figures for a timm model need a ViT (vit_*, deit_*)"
        )
    return FigureSource("vit", name, module=model.to(device).eval())


def _looks_like_timm_name(name: str) -> bool:
    import timm

    base = name.split(":", 1)[-1].removeprefix("timm/")
    return name.startswith(("hf-hub:", "hf_hub:", "timm/")) or timm.is_model(base) or timm.is_model(base.split(".")[0])


def resolve(source: str, device) -> FigureSource:
    """Reads --ckpt; a one-line error names what it is not."""
    from vitlight.checkpoints import load_module

    path = Path(source).expanduser()
    if path.is_dir():
        if _transformers_folder(path):
            return load_transformers_igpt(str(path), device)
        if not any(path.rglob("summary.json")):
            raise ConfigError(
                f"--ckpt {source!r} is a folder without run summaries (summary.json); give a sweep or runs folder, or a .ckpt file"
            )
        return FigureSource("sweep", path.name, folder=path)
    if path.is_file():
        module, config = load_module(path, map_location=device)
        label = f"{config.get('experiment') or 'checkpoint'} ({path.name})"
        if hasattr(module, "complete"):
            return FigureSource("igpt", label, module=module, config=config, checkpoint=path.resolve())
        if hasattr(module, "backbone") and is_vit(module):
            return FigureSource("vit", label, module=module, config=config, checkpoint=path.resolve())
        name = getattr(getattr(module, "hparams", None), "model_name", None) or type(module).__name__
        raise CheckpointError(
            f"--ckpt {source!r} holds a {name}; vitlight figures draws a ViT classifier, an ImageGPT or a sweep folder"
        )
    if source.startswith(TRANSFORMERS_IGPT_PREFIX):
        return load_transformers_igpt(source, device)
    if _looks_like_timm_name(source):
        return load_timm(source, device)
    raise ConfigError(
        f"--ckpt {source!r} is neither a file, a folder, a timm model name (timm.list_models()) "
        f"nor an ImageGPT in transformers format ({TRANSFORMERS_IGPT_PREFIX}-*)"
    )


def find_probe_summary(checkpoint: Path, explicit: str | None) -> Path | None:
    """The newest `vitlight probe` summary of this checkpoint, next to its run (runs/probe_*/<run>/summary.json)."""
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise ConfigError(f"--probe {explicit!r} does not exist; give the summary.json that `vitlight probe` wrote")
        return path
    if checkpoint.parent.name != "checkpoints" or len(checkpoint.parents) < 4:
        return None
    runs_root = checkpoint.parents[3]  # runs/<experiment>/<run>/checkpoints/x.ckpt
    found = []
    for summary in runs_root.glob("probe_*/*/summary.json"):
        try:
            data = json.loads(summary.read_text())
        except (OSError, ValueError):
            continue
        if data.get("subcommand") == "probe" and Path(str(data.get("checkpoint", ""))).resolve() == checkpoint:
            found.append(summary)
    return max(found, key=lambda p: p.parent.name) if found else None
