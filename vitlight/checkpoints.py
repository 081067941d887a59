"""Reading vitlight checkpoints back: the module, and the data its run was configured with.

Every checkpoint carries the run's resolved config (`vitlight_config`, plain types), so a
checkpoint alone is enough for `vitlight sample/probe/attention`, and `--data ...` overrides it
(`vitlight.data.from_config` builds that data module).
"""

from __future__ import annotations

import importlib
import re
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


def read_checkpoint(path: str | Path, mmap: bool = False) -> dict[str, Any]:
    """torch.load with weights_only=True: a checkpoint can hold tensors and plain values, never code
    (`mmap`: the tensors stay on disk until read, for a look at a large checkpoint)."""
    path = Path(path).expanduser()
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise CheckpointError(f"checkpoint {str(path)!r} {what}")
    if mmap:  # torch maps only its zip format; an older (legacy pickle) checkpoint is read whole
        with open(path, "rb") as stream:
            mmap = stream.read(4) == b"PK\x03\x04"
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {_unreadable(path, str(error))}") from None


def _unreadable(path: Path, message: str) -> str:
    """torch.load's failure in words that name the file's problem (torch's own text for a file with
    code in it ends by suggesting weights_only=False: vitlight never does that)."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(4)
    except OSError:
        head = b""
    if head != b"PK\x03\x04" and not head.startswith(b"\x80"):  # neither torch's zip format nor its legacy pickle
        return f"it is not a PyTorch checkpoint (it starts with {head!r}); give a .ckpt that `vitlight fit` wrote"
    if "Weights only load failed" in message:
        return (
            "it holds Python objects other than tensors and plain values, which vitlight does not unpickle (that "
            "could run code); give a .ckpt that `vitlight fit` wrote"
        )
    if head == b"PK\x03\x04" or re.search(r"central directory|unexpected EOF|Ran out of input", message):
        return (
            "the file is truncated or damaged (an interrupted copy?); give a complete .ckpt that `vitlight fit` wrote"
        )
    first = (message.splitlines() or [""])[0].split(" weights_only")[0][:200]
    return f"{first}; give a .ckpt that `vitlight fit` wrote"


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


def without_compile_wrapper(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State-dict keys as the plain module has them: checkpoints of runs that replaced a submodule by
    `torch.compile(module)` (vitlight before it compiled in place) carry `_orig_mod.` in their keys."""
    return {key.replace("._orig_mod.", ".").removeprefix("_orig_mod."): value for key, value in state_dict.items()}


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
    missing, unexpected = module.load_state_dict(without_compile_wrapper(checkpoint["state_dict"]), strict=False)
    if unexpected or missing:
        raise CheckpointError(
            f"checkpoint {str(path)!r} does not fit {module_class.__name__}: missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}"
        )
    return module.to(map_location).eval(), config
