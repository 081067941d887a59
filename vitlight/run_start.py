"""A run's start checks: nothing in a run folder (summary.json, config.yaml, checkpoints, W&B files)
changes until the run got past them.

Before the trainer starts, a given checkpoint is read (weights only) and compared with this
command's config: a checkpoint of another task is refused, and the model keys whose values differ
are named. The command line wins over the checkpoint's hyperparameters (LightningCLI would apply
them silently; vitlight does not): a difference that still fits the weights (a label smoothing, a
learning rate) is said in one line, one that does not fit them (a depth) ends the run in one line
naming the key. The trainer then sets up the data and loads the checkpoint; only then, at the
first `on_*_start` hook, does `RunStarted` let the run write its record.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from vitlight.checkpoints import CONFIG_KEY, read_checkpoint, without_compile_wrapper
from vitlight.errors import CheckpointError, WriteError
from vitlight.files import free_space

# keys that may differ on purpose between a checkpoint and a run that continues from it
_IGNORED = ("model.init_args.checkpoint_path", "model.init_args.pretrained")


class RunStarted(Callback):
    """Calls `start(trainer)` once, at the first start hook (after data set-up and checkpoint loading)."""

    def __init__(self, start: Callable[[L.Trainer], None]) -> None:
        self._start = start
        self.started = False

    def _once(self, trainer: L.Trainer) -> None:
        if not self.started:
            self.started = True
            self._start(trainer)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._once(trainer)

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._once(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._once(trainer)

    def on_predict_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._once(trainer)


def _flat(tree: Any, prefix: str) -> dict[str, Any]:
    if isinstance(tree, dict):
        flat: dict[str, Any] = {}
        for key, value in tree.items():
            flat.update(_flat(value, f"{prefix}.{key}"))
        return flat
    return {prefix: tree}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return float(a) == float(b)
    return a == b


def model_differences(run_model: dict[str, Any], checkpoint_model: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(full key, value in this run, value in the checkpoint) for each model setting that differs."""
    mine, theirs = _flat(run_model, "model"), _flat(checkpoint_model, "model")
    differences = []
    for key in sorted(set(mine) | set(theirs)):
        here, there = mine.get(key), theirs.get(key)
        if key in _IGNORED or "***" in (here, there) or _same(here, there):
            continue
        differences.append((key, here, there))
    return differences


def check_checkpoint(path: str, run_model: dict[str, Any], module: L.LightningModule) -> list[tuple[str, Any, Any]]:
    """Reads the checkpoint `--ckpt_path` names and compares it with this run's resolved `model` section and
    module: a one-line CheckpointError for an unreadable file, a checkpoint of another model class or weights
    that do not fit the module (keys and shapes, as Lightning's strict loading would find them); else the model
    settings that differ (the command line wins over them)."""
    checkpoint = read_checkpoint(path, mmap=True)
    if not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{str(path)!r} holds no state_dict; give a checkpoint that `vitlight fit` wrote")
    saved = checkpoint.get(CONFIG_KEY, {}).get("model") if isinstance(checkpoint.get(CONFIG_KEY), dict) else None
    theirs_class = (saved or {}).get("class_path") or (checkpoint.get("hyper_parameters") or {}).get("_class_path")
    mine_class = run_model.get("class_path")
    if theirs_class and mine_class and theirs_class.rsplit(".", 1)[-1] != mine_class.rsplit(".", 1)[-1]:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is a {theirs_class} checkpoint but this run's model.class_path is "
            f"{mine_class}; --ckpt_path takes a checkpoint of the same model class"
        )
    differences = model_differences(run_model, saved) if saved else []
    if getattr(module, "strict_loading", True):
        problem = _weights_problem(module, without_compile_wrapper(checkpoint["state_dict"]))
        if problem:
            raise unfit_error(path, differences, problem)
    return differences


def _weights_problem(module: L.LightningModule, weights: dict[str, Any]) -> str | None:
    """What keeps `weights` from loading strictly into `module`, or None."""
    own = without_compile_wrapper(module.state_dict())
    shapes = [
        f"{key} {tuple(weights[key].shape)} in the checkpoint, {tuple(value.shape)} here"
        for key, value in own.items()
        if key in weights and hasattr(weights[key], "shape") and tuple(weights[key].shape) != tuple(value.shape)
    ]
    missing = [key for key in own if key not in weights]
    unexpected = [key for key in weights if key not in own]
    parts = [f"shapes differ: {'; '.join(shapes[:2])}"] if shapes else []
    parts += [f"{len(missing)} weights missing (e.g. {missing[0]})"] if missing else []
    parts += [f"{len(unexpected)} weights this model lacks (e.g. {unexpected[0]})"] if unexpected else []
    return ", ".join(parts) or None


def overridden_line(differences: list[tuple[str, Any, Any]]) -> str:
    shown = ", ".join(f"{key} {here!r} (checkpoint: {there!r})" for key, here, there in differences[:6])
    more = f" and {len(differences) - 6} more" if len(differences) > 6 else ""
    return f"vitlight: the command line wins over the checkpoint's settings: {shown}{more}"


def unfit_error(path: str, differences: list[tuple[str, Any, Any]], error: BaseException | str) -> CheckpointError:
    """The one line for weights that do not fit this run's model: the settings that made it, else the weights."""
    if differences:
        named = "; ".join(
            f"{key} is {here!r} here, {there!r} in the checkpoint" for key, here, there in differences[:4]
        )
        return CheckpointError(
            f"checkpoint {str(path)!r} does not fit this run's model: {named}; resume with the checkpoint's values, "
            "or start a new run without --ckpt_path"
        )
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    detail = (lines[1] if len(lines) > 1 else lines[0])[:300] if lines else type(error).__name__
    return CheckpointError(f"checkpoint {str(path)!r} does not fit this run's model: {detail}")


def is_state_dict_mismatch(error: BaseException) -> bool:
    return isinstance(error, RuntimeError) and "Error(s) in loading state_dict" in str(error)


def wandb_links(run_folder: Path) -> dict[Path, str]:
    """The symbolic links W&B keeps in `<run>/wandb` (latest-run, debug.log, ...) and their targets."""
    folder = run_folder / "wandb"
    return {p: os.readlink(p) for p in folder.iterdir() if p.is_symlink()} if folder.is_dir() else {}


def restore_links(links: dict[Path, str]) -> None:
    """Points W&B's links back where they were (a removed attempt had moved them to its own files)."""
    for path, target in links.items():
        try:
            path.unlink(missing_ok=True)
            path.symlink_to(target)
        except OSError:
            continue


ROOM_MARGIN_BYTES = 1024 * 1024  # summary.json, config.yaml, the lock and the first W&B records


def check_room(run_folder: Path, checkpoint: str) -> None:
    """A resumed run writes a checkpoint as large as the one it resumes (atomically: a whole new copy beside
    the old one); refusing at the start a disk that cannot hold it keeps the run's record as it was."""
    try:
        need = Path(checkpoint).stat().st_size + ROOM_MARGIN_BYTES
        free = shutil.disk_usage(run_folder).free
    except OSError:
        return
    if free < need:
        raise WriteError(
            f"the disk is full: {free_space(run_folder)} free on {str(run_folder)!r}, and a checkpoint of this run "
            f"needs {need / 2**20:.1f} MiB; free space there before resuming"
        )
