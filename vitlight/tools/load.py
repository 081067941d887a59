"""The model behind a tool's --ckpt: a vitlight checkpoint, or OpenAI's ImageGPT (transformers folder or hub name)."""

from __future__ import annotations

from typing import Any

import torch
from lightning import LightningModule

from vitlight.errors import ConfigError


def is_openai_source(ckpt: str) -> bool:
    from vitlight.models.igpt_transformers import is_transformers_folder, looks_like_hub_name

    return is_transformers_folder(ckpt) or looks_like_hub_name(ckpt)


def load_for_tool(ckpt: str, device: torch.device) -> tuple[LightningModule, dict[str, Any]]:
    """(module in eval mode on ``device``, run config). OpenAI's models carry no run config: the data
    then comes from --data alone."""
    if is_openai_source(ckpt):
        from vitlight.tasks.pixel_pretrain import PixelPretrainer

        return PixelPretrainer.from_transformers(ckpt).to(device).eval(), {
            "data": None,
            "experiment": ckpt.replace("/", "_"),
        }
    from vitlight.checkpoints import load_module

    return load_module(ckpt, map_location=device)


def require_data(ckpt: str, overrides: list[str], prog: str) -> None:
    """OpenAI's models hold no data config: --data must name the data (checked before any download)."""
    if is_openai_source(ckpt) and not any(token == "--data" or token.startswith("--data=") for token in overrides):
        raise ConfigError(
            f"{prog}: {ckpt!r} holds no data config; name the data, e.g. --data CIFAR10 --data.data_dir DIR"
        )
