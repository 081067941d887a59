"""The run folder `runs/<experiment>/<run id>/` and its summary.json."""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from vitlight.errors import ConfigError, WriteError
from vitlight.files import disk_full_reason, is_disk_full, write_json_atomic
from vitlight.logging_wandb import redact_secrets

SUMMARY_FILE = "summary.json"
TRACKED_PACKAGES = (
    "vitlight",
    "torch",
    "torchvision",
    "lightning",
    "torchmetrics",
    "timm",
    "datasets",
    "wandb",
    "numpy",
)


def new_run_id() -> str:
    """Sortable by start time, unique across parallel starts."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


def new_wandb_id() -> str:
    """A W&B run id made as wandb makes its own (8 base-36 characters), decided before the logger starts so that
    every rank and a later `--ckpt_path last` agree on it."""
    from wandb.sdk.lib.runid import generate_id

    return generate_id()


@dataclass
class RunFolder:
    runs_dir: Path
    experiment: str
    run_id: str
    wandb_id: str
    started: float = field(default_factory=time.time)

    @property
    def path(self) -> Path:
        return self.runs_dir / self.experiment / self.run_id

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def check_writable(self) -> None:
        """Fails before any work when the run folder could not be created."""
        existing = self.path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(
                f"cannot write the run folder {str(self.path)!r} ({str(existing)!r} is not a writable folder); set "
                "--runs_dir to a writable folder"
            )

    def create(self) -> None:
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            if is_disk_full(error, self.runs_dir):
                raise WriteError(
                    f"cannot create the run folder {str(self.path)!r}: {disk_full_reason(self.runs_dir)}"
                ) from None
            raise ConfigError(
                f"cannot create the run folder {str(self.path)!r} ({error.strerror}); set --runs_dir to a writable "
                "folder"
            ) from None
        if not os.access(self.path, os.W_OK):
            raise ConfigError(f"the run folder {str(self.path)!r} is not writable; set --runs_dir to a writable folder")

    def write_summary(self, summary: dict[str, Any]) -> Path:
        """Writes the run's summary.json (secrets redacted, atomically): every command that records a run calls this."""
        path = self.path / SUMMARY_FILE
        write_json_atomic(path, redact_secrets(summary), what="summary")
        return path


LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


def latest_run(runs_dir: Path, experiment: str) -> Path | None:
    """The newest run folder of an experiment that holds checkpoints/last.ckpt (run ids sort by start
    time): a newer run that failed before its first checkpoint does not hide the one to resume."""
    folder = runs_dir / experiment
    if not folder.is_dir():
        return None
    runs = sorted(p for p in folder.iterdir() if p.is_dir() and (p / LAST_CHECKPOINT).is_file())
    return runs[-1] if runs else None


def read_summary(run_path: Path) -> dict[str, Any]:
    return json.loads((run_path / SUMMARY_FILE).read_text())


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def write_start_record(run: RunFolder, subcommand: str, seed: Any) -> dict[str, Any]:
    """Writes summary.json the moment a run starts: its identity and status `running`.

    A run killed by SIGKILL, a crash or a full disk never writes its final summary; this record is
    what `--ckpt_path last` then reads to continue the same W&B run. A resumed run keeps the first
    start time and adds its own to `resumed_at`.
    """
    path = run.path / SUMMARY_FILE
    try:
        previous = read_summary(run.path) if path.is_file() else {}
    except (OSError, ValueError):
        previous = {}
    now = _utc(time.time())
    record = {
        "status": "running",
        "subcommand": subcommand,
        "experiment": run.experiment,
        "run_id": run.run_id,
        "wandb_run_id": run.wandb_id,
        "started_at": previous.get("started_at") or now,
        "resumed_at": [*previous.get("resumed_at", []), now] if previous else [],
        "seed": seed,
        "git_commit": git_commit(),
        "packages": package_versions(),
        "hardware": hardware(),
    }
    run.write_summary(record)
    return record


def wandb_id_of(run_path: Path) -> str | None:
    """The W&B run id a run folder recorded in summary.json. A folder with a checkpoint always has one: the
    record is written when the run starts, before its first checkpoint and W&B's first files."""
    try:
        recorded = read_summary(run_path).get("wandb_run_id")
    except (OSError, ValueError):
        return None
    return str(recorded) if recorded else None


def git_commit() -> str | None:
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in TRACKED_PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cuda_devices": [],
    }
    if torch.cuda.is_available():
        info["cuda_devices"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return info


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else value.tolist()
    return value


class BestValidationMetrics(Callback):
    """Remembers every `val/*` metric of the epoch that the checkpoint monitor rated best."""

    def __init__(self) -> None:
        self.metrics: dict[str, float] = {}
        self.epoch: int | None = None
        self._best: float | None = None

    @staticmethod
    def _monitor(trainer: L.Trainer) -> tuple[str | None, str]:
        for callback in trainer.callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.monitor:
                return callback.monitor, callback.mode
        return None, "min"

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        current = {k: _plain(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        if not current:
            return
        monitor, mode = self._monitor(trainer)
        score = current.get(monitor) if monitor else None
        better = self._best is None or score is None or (score > self._best if mode == "max" else score < self._best)
        if better:
            self._best = score
            self.metrics = current
            self.epoch = trainer.current_epoch
