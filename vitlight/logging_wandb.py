"""Weights & Biases glue: the automatic online/offline choice, secrets kept out of configs, tables."""

from __future__ import annotations

import netrc
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

SECRET_KEYS = {"token", "api_key", "apikey", "password", "secret", "hf_token", "access_token", "auth_token"}
SECRET_SUFFIXES = ("_api_key", "_apikey", "_password", "_secret", "_auth_token", "_access_token")
REDACTED = "***"


def _wandb_host() -> str:
    return urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname or "api.wandb.ai"


def has_wandb_credentials() -> bool:
    """An API key in the environment or a netrc entry for the W&B host (what `wandb login` writes)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    path = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.netrc(str(path)).authenticators(_wandb_host()) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def choose_wandb_mode() -> tuple[str, str]:
    """Returns (mode, reason). WANDB_MODE wins when set; otherwise online with credentials, else offline."""
    explicit = os.environ.get("WANDB_MODE")
    if explicit:
        return explicit, "WANDB_MODE is set"
    if has_wandb_credentials():
        return "online", "W&B credentials found"
    return "offline", "no W&B credentials (WANDB_API_KEY or a netrc entry)"


def apply_wandb_mode() -> tuple[str, str]:
    mode, reason = choose_wandb_mode()
    os.environ["WANDB_MODE"] = mode
    # W&B would otherwise prompt for a login in a terminal when offline runs start
    os.environ.setdefault("WANDB_SILENT", "true")
    return mode, reason


def start_command_run(run_folder: Any, experiment: str, job_type: str, config: dict[str, Any]) -> Any:
    """A W&B run for a vitlight command's result (probe, pipeline) in its run folder, in the mode
    `apply_wandb_mode` chooses; None when W&B is disabled."""
    mode, _ = apply_wandb_mode()
    if mode == "disabled":
        return None
    import wandb

    return wandb.init(
        project="vitlight",
        dir=str(run_folder.path),
        id=run_folder.wandb_id,
        name=f"{experiment}/{run_folder.run_id}",
        job_type=job_type,
        config=config,
        mode=mode,
    )


def redact_secrets(value: Any, key: str = "") -> Any:
    """A copy of a nested config with every secret-looking entry (or value equal to the API key) replaced."""
    api_key = os.environ.get("WANDB_API_KEY")
    lowered = key.lower()
    if lowered in SECRET_KEYS or lowered.endswith(SECRET_SUFFIXES):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_secrets(v, key) for v in value)
    if api_key and isinstance(value, str) and api_key in value:
        return value.replace(api_key, REDACTED)
    return value


def update_unlocked(wandb_config: Any, resolved: dict[str, Any]) -> None:
    """The resolved config into a W&B run config, whose keys set by a sweep are locked (W&B ignores updates to
    them): the other keys get their sections; a locked key whose value is not the resolved one (a nested sweep
    block holds only the searched part) keeps it, and the resolved section goes under `resolved.<key>`."""
    locked = set(getattr(wandb_config, "_locked", {}) or {})
    wandb_config.update({k: v for k, v in resolved.items() if k not in locked}, allow_val_change=True)
    differing = {k: v for k, v in resolved.items() if k in locked and wandb_config.get(k) != v}
    if differing:
        wandb_config.update({"resolved": differing}, allow_val_change=True)


def wandb_loggers(loggers: Iterable[Any]) -> list[Any]:
    from lightning.pytorch.loggers import WandbLogger

    return [logger for logger in loggers if isinstance(logger, WandbLogger)]


def log_confusion_matrix(loggers: Iterable[Any], matrix: torch.Tensor, class_names: list[str]) -> None:
    """Logs the test confusion matrix and per-class accuracy as W&B tables (no-op without a WandbLogger)."""
    targets = wandb_loggers(loggers)
    if not targets:
        return
    import wandb

    counts = matrix.sum(dim=1)
    per_class = wandb.Table(columns=["class", "accuracy", "images"])
    for index, name in enumerate(class_names):
        total = int(counts[index])
        per_class.add_data(name, float(matrix[index, index]) / max(total, 1), total)
    confusion = wandb.Table(columns=["actual", "predicted", "count"])
    for actual, row in enumerate(matrix.tolist()):
        for predicted, count in enumerate(row):
            if count:
                confusion.add_data(class_names[actual], class_names[predicted], int(count))
    for logger in targets:
        logger.experiment.log({"test/per_class_accuracy": per_class, "test/confusion_matrix": confusion})
