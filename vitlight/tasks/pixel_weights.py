"""Where a PixelPretrainer's starting weights come from: a vitlight PixelPretrainer checkpoint (its
weights and palette, checked against the model's objective and shape) or OpenAI's released ImageGPT
in Hugging Face transformers format."""

from __future__ import annotations

import logging
from typing import Any

from vitlight.errors import CheckpointError
from vitlight.models.palette import Palette

log = logging.getLogger(__name__)

PALETTE_KEY = "igpt_palette"  # where every PixelPretrainer checkpoint keeps its palette


def load_pixel_weights(module: Any, path: str) -> None:
    """Weights and palette into a PixelPretrainer: from a vitlight PixelPretrainer checkpoint (same
    objective and shape), or from OpenAI's ImageGPT in transformers format (a folder or a hub name)."""
    from vitlight.models.igpt_transformers import is_transformers_folder, looks_like_hub_name

    if is_transformers_folder(path) or looks_like_hub_name(path):
        _load_transformers(module, path)
        return
    from vitlight.checkpoints import read_checkpoint

    checkpoint = read_checkpoint(path)
    theirs = checkpoint.get("hyper_parameters", {})
    if PALETTE_KEY not in checkpoint:
        raise CheckpointError(
            f"checkpoint {path!r} holds no ImageGPT palette; model.checkpoint_path must be a PixelPretrainer checkpoint"
        )
    if theirs.get("objective", module.hparams.objective) != module.hparams.objective:
        raise CheckpointError(
            f"checkpoint {path!r} was trained with objective {theirs['objective']!r}; set model.objective: "
            f"{theirs['objective']}"
        )
    weights = {k[len("model.") :]: v for k, v in checkpoint["state_dict"].items() if k.startswith("model.")}
    try:
        module.model.load_state_dict(weights)
    except RuntimeError as error:
        shapes = ", ".join(
            f"{k}={theirs.get(k)}" for k in ("preset", "n_layer", "n_embd", "n_head", "palette_size", "image_size")
        )
        detail = next((line.strip() for line in str(error).splitlines()[1:] if line.strip()), "")
        raise CheckpointError(f"checkpoint {path!r} does not fit this model (it has {shapes}): {detail}") from None
    module.set_palette(Palette.from_dict(checkpoint[PALETTE_KEY]))
    log.info("loaded ImageGPT weights and palette from %s", path)


def _load_transformers(module: Any, path: str) -> None:
    from vitlight.models.igpt_transformers import from_transformers

    model, palette = from_transformers(path)
    if model.cfg != module.model.cfg:
        theirs, ours = vars(model.cfg), vars(module.model.cfg)
        differ = ", ".join(
            f"{k}={theirs[k]} (here {ours[k]})" for k in theirs if theirs[k] != ours[k] and k != "dropout"
        )
        if differ:
            raise CheckpointError(
                f"OpenAI ImageGPT {path!r} does not fit this model: {differ}; build it with "
                "PixelPretrainer.from_transformers or set those model options"
            )
    module.model.load_state_dict(model.state_dict())
    module.set_palette(palette)
    log.info("loaded OpenAI ImageGPT weights and palette from %s", path)
