"""Plain helpers of vitlight's LightningCLI: the experiment's name, the W&B key scrubbed from the config
and the command line, the class paths of config entries, closing the W&B run, the model's description."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger


def experiment_name(config_paths: list[Any]) -> str:
    """The first config file that is not a shared section (`_trainer.yaml`, `_smoke.yaml`) names the experiment."""
    names = [Path(str(getattr(p, "relative", p))).stem for p in config_paths or []]
    for name in names:
        if not name.startswith("_"):
            return name
    return names[0].lstrip("_") if names else "default"


def scrub_api_key(node: Any) -> Any:
    """Replaces the W&B API key inside every string of a parsed config, in place."""
    key = os.environ.get("WANDB_API_KEY")
    if not key:
        return node
    if isinstance(node, str):
        return node.replace(key, "***")
    items = node.items() if hasattr(node, "items") else enumerate(node) if isinstance(node, list) else []
    for name, value in list(items):
        node[name] = scrub_api_key(value)
    return node


def class_path(entry: Any) -> str:
    return str(getattr(entry, "class_path", "") or "")


def as_list(value: Any) -> list[Any]:
    if value is None or isinstance(value, bool):
        return []
    return list(value) if isinstance(value, list) else [value]


def finish_wandb(trainer: L.Trainer, failed: bool) -> Path | None:
    """Closes the W&B run (marked failed on a non-zero exit code) so the next run in this process starts clean;
    returns the folder of this process's W&B run files (None without one)."""
    if not any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
        return None
    import wandb

    folder = None
    if wandb.run is not None:
        folder = Path(wandb.run.dir).parent  # <save_dir>/wandb/offline-run-<time>-<id>/files
        wandb.finish(exit_code=1 if failed else 0)
    wandb.teardown()  # the next run in this process reads WANDB_MODE afresh
    return folder


def model_description(model: L.LightningModule) -> dict[str, Any]:
    hparams = dict(getattr(model, "hparams", {}) or {})
    parameters = sum(p.numel() for p in model.parameters() if not getattr(p, "is_meta", False))
    return {
        "class": type(model).__name__,
        "model_name": hparams.get("model_name") or hparams.get("preset"),
        "parameters": parameters,
    }
