"""Weights & Biases glue: the online/offline choice as wandb makes it, secrets kept out of configs, tables."""

from __future__ import annotations

import netrc
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import torch

SECRET_KEYS = {"token", "api_key", "apikey", "password", "secret", "hf_token", "access_token", "auth_token"}
SECRET_SUFFIXES = ("_api_key", "_apikey", "_password", "_secret", "_auth_token", "_access_token")
REDACTED = "***"
# The W&B cloud's API host: wandb's default base URL (a CoreWeave Forge proxy) also accepts its netrc entry.
CLOUD_API_HOST = "api.wandb.ai"
SWEEP_NAME_ENV = "VITLIGHT_SWEEP_NAME"


def wandb_settings() -> Any:
    """wandb's settings before `wandb.init`: its settings files (global, then ./wandb/settings), then the WANDB_*
    variables, read by wandb's own `Settings` (so `base_url` and `mode` are what wandb will use)."""
    import wandb

    settings = wandb.Settings()
    config_dir = os.environ.get("WANDB_CONFIG_DIR")
    system = Path(config_dir).expanduser() / "settings" if config_dir else Path("~/.config/wandb/settings").expanduser()
    settings.settings_system = str(system)
    settings.update_from_system_settings()
    settings.update_from_env_vars(dict(os.environ))
    return settings


def netrc_path() -> Path:
    """The netrc file wandb reads: $NETRC, else ~/.netrc, else ~/_netrc."""
    if os.environ.get("NETRC"):
        return Path(os.environ["NETRC"]).expanduser()
    unix, windows = Path("~/.netrc").expanduser(), Path("~/_netrc").expanduser()
    return windows if windows.exists() and not unix.exists() else unix


def netrc_key(base_url: str) -> str | None:
    """The API key a netrc file holds for the W&B server at `base_url`, looked up as wandb does: the machine is the
    URL's host with its port (`localhost:8080`); the cloud's default proxy URL also takes the cloud API host's entry."""
    try:
        entries = netrc.netrc(str(netrc_path()))
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return None
    parts = urlsplit(base_url)
    machines = [parts.netloc] if parts.netloc else []
    if parts.hostname and parts.hostname.endswith("forge.coreweave.com") and parts.port is None:
        machines.append(CLOUD_API_HOST)
    for machine in machines:
        found = entries.authenticators(machine)
        if found and found[2]:
            return found[2]
    return None


def has_wandb_credentials(settings: Any | None = None) -> bool:
    """An API key (or identity token file) in the environment, a netrc entry for wandb's server (WANDB_BASE_URL or
    the settings file's base_url), or an API key in wandb's settings."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    settings = settings or wandb_settings()
    return bool(netrc_key(settings.base_url) or settings.api_key)


def choose_wandb_mode() -> tuple[str, str]:
    """Returns (mode, reason). A mode wandb was given (WANDB_MODE, or `wandb offline` in its settings file) wins;
    otherwise online with credentials for its server, else offline."""
    explicit = os.environ.get("WANDB_MODE")
    if explicit:
        return explicit, "WANDB_MODE is set"
    settings = wandb_settings()
    if settings.mode in ("offline", "disabled", "dryrun"):
        return ("offline" if settings.mode == "dryrun" else settings.mode), "set in wandb's settings file"
    if has_wandb_credentials(settings):
        return "online", f"W&B credentials for {settings.base_url}"
    return "offline", f"no W&B credentials for {settings.base_url} (WANDB_API_KEY or a netrc entry)"


def apply_wandb_mode() -> tuple[str, str]:
    """Sets WANDB_MODE to the chosen mode (children and later runs agree). wandb is quiet, not silent: online it
    still prints the line `View run at URL` (WANDB_SILENT would hide it)."""
    mode, reason = choose_wandb_mode()
    os.environ["WANDB_MODE"] = mode
    os.environ.setdefault("WANDB_QUIET", "true")
    return mode, reason


def sweep_name() -> str | None:
    """The name of the sweep this process runs a trial of (`--sweep_name`, which every sweep file passes)."""
    return os.environ.get(SWEEP_NAME_ENV) or None


def join_sweep(name: str | None) -> None:
    """Marks every W&B run this process starts as one of sweep `name`: its group and a tag are the sweep's name
    (what `vitlight dashboard` and `wandb sync` find a sweep's runs by, online and offline alike)."""
    if not name:
        return
    os.environ[SWEEP_NAME_ENV] = name
    os.environ["WANDB_RUN_GROUP"] = name
    tags = [t for t in os.environ.get("WANDB_TAGS", "").split(",") if t]
    os.environ["WANDB_TAGS"] = ",".join([*tags, name] if name not in tags else tags)


def start_command_run(run_folder: Any, experiment: str, job_type: str, config: dict[str, Any]) -> Any:
    """A W&B run for a vitlight command's result (probe, pipeline) in its run folder, in the mode
    `apply_wandb_mode` chooses; None when W&B is disabled. Under a W&B agent, W&B takes the agent's run id."""
    mode, _ = apply_wandb_mode()
    if mode == "disabled":
        return None
    import wandb

    return wandb.init(
        project="vitlight",
        dir=str(run_folder.path),
        id=run_folder.wandb_id or None,  # None: W&B picks one (a W&B agent's run id wins either way)
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
    """The resolved config into a W&B run config without touching the keys it already holds (a sweep's keys,
    which W&B locks): the other sections are added; a held key whose value is not the resolved one (a nested sweep
    block holds only the searched part) keeps it, and the resolved section goes under `resolved.<key>`."""
    wandb_config.update({k: v for k, v in resolved.items() if k not in wandb_config}, allow_val_change=True)
    differing = {k: v for k, v in resolved.items() if wandb_config.get(k) != v}
    if differing:
        wandb_config.update({"resolved": differing}, allow_val_change=True)


def wandb_loggers(loggers: Iterable[Any]) -> list[Any]:
    from lightning.pytorch.loggers import WandbLogger

    return [logger for logger in loggers if isinstance(logger, WandbLogger)]


def log_confusion_matrix(loggers: Iterable[Any], matrix: torch.Tensor, class_names: list[str]) -> None:
    """Logs the test confusion matrix as W&B's confusion-matrix chart and the per-class accuracy as a bar chart
    (no-op without a WandbLogger)."""
    targets = wandb_loggers(loggers)
    if not targets:
        return
    import wandb

    actual, predicted = [], []  # the chart counts (actual, predicted) pairs: one pair per test image
    for row, counts in enumerate(matrix.tolist()):
        for column, count in enumerate(counts):
            actual += [row] * int(count)
            predicted += [column] * int(count)
    totals = matrix.sum(dim=1)
    per_class = wandb.Table(
        columns=["class", "accuracy", "images"],
        data=[
            [name, float(matrix[i, i]) / max(int(totals[i]), 1), int(totals[i])] for i, name in enumerate(class_names)
        ],
    )
    charts = {
        "test/confusion_matrix": wandb.plot.confusion_matrix(
            y_true=actual, preds=predicted, class_names=class_names, title="test confusion matrix"
        ),
        "test/per_class_accuracy": wandb.plot.bar(per_class, "class", "accuracy", title="test accuracy per class"),
    }
    for logger in targets:
        logger.experiment.log(charts)
