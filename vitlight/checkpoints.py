"""Reading vitlight checkpoints back: the module, and the data its run was configured with.

Every checkpoint carries the run's resolved config (`vitlight_config`, plain types), so a
checkpoint alone is enough for `vitlight sample/probe/attention`, and `--data ...` overrides it.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from vitlight.errors import CheckpointError, ConfigError

CONFIG_KEY = "vitlight_config"


class ConfigInCheckpoint(Callback):
    """Stores the resolved run config in every checkpoint the trainer writes."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        from vitlight.logging_wandb import redact_secrets

        checkpoint[CONFIG_KEY] = self.config
        for key in ("hyper_parameters", "datamodule_hyper_parameters"):
            if isinstance(checkpoint.get(key), dict):
                checkpoint[key] = redact_secrets(dict(checkpoint[key]))


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """torch.load with weights_only=True: a checkpoint can hold tensors and plain values, never code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        first = (str(error).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r} ({type(error).__name__}: {first}); is it a vitlight .ckpt?"
        ) from None


def checkpoint_config(checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> dict[str, Any]:
    config = checkpoint.get(CONFIG_KEY)
    if not isinstance(config, dict):
        raise CheckpointError(f"{str(path)!r} has no vitlight run config; was it written by `vitlight fit`?")
    return config


def import_class(class_path: str) -> type:
    module_name, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(f"class {class_path!r} cannot be imported") from None


def load_module(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[L.LightningModule, dict[str, Any]]:
    """The trained LightningModule of a checkpoint (built from its saved hyperparameters) and the run config."""
    checkpoint = read_checkpoint(path)
    config = checkpoint_config(checkpoint, path)
    module_class = import_class(config["model"]["class_path"])
    hparams = dict(checkpoint.get("hyper_parameters", {}))
    hparams.pop("_instantiator", None)
    hparams.pop("_class_path", None)  # added by LightningCLI in subclass mode; not an init argument
    # the weights come from the checkpoint: do not reload a pretrained or fine-tuning source
    for key in ("pretrained", "checkpoint_path"):
        if key in hparams:
            hparams[key] = False if key == "pretrained" else None
    module = module_class(**hparams)
    if hasattr(module, "on_load_checkpoint"):
        module.on_load_checkpoint(checkpoint)
    from vitlight.tasks.weights import without_compile_wrapper

    missing, unexpected = module.load_state_dict(without_compile_wrapper(checkpoint["state_dict"]), strict=False)
    if unexpected or missing:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit {module_class.__name__}: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return module.to(map_location).eval(), config


def build_datamodule(data_config: dict[str, Any] | None, overrides: list[str] | None = None):
    """Instantiates the data module of a run config, with `--data X --data.key value` overrides on top."""
    from jsonargparse import ArgumentParser

    from vitlight.cli_errors import format_parse_error
    from vitlight.data.base import ImageDataModule

    class _Parser(ArgumentParser):
        def error(self, message: str, ex: Exception | None = None):  # type: ignore[override]
            raise ConfigError(format_parse_error(str(message), argv=overrides))

    parser = _Parser(exit_on_error=False)
    parser.add_subclass_arguments(ImageDataModule, "data")
    args = (["--data", json.dumps(data_config)] if data_config else []) + list(overrides or [])
    config = parser.parse_args(args)
    return parser.instantiate_classes(config).data
