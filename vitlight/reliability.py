"""Losing nothing: atomic checkpoint writes, random states in checkpoints, step checkpoints,
a checkpoint on SIGTERM (preemption), and a stop on a non-finite loss."""

from __future__ import annotations

import errno
import logging
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback

from vitlight.errors import CheckpointError, VitlightError
from vitlight.syncs import log_due

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.ckpt"


def _default_file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


class TrainingError(VitlightError):
    """Training cannot go on (a non-finite loss)."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to a temporary file in the same folder, flushes and fsyncs it, then renames it over
    the target: a kill or a full disk during a save never leaves a truncated checkpoint in place
    of the previous good one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                torch.save(checkpoint, stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.chmod(temporary, _default_file_mode())  # mkstemp makes 0600; keep the usual umask-based mode
            os.replace(temporary, path)
        except OSError as error:
            Path(temporary).unlink(missing_ok=True)
            reason = "the disk is full" if error.errno == errno.ENOSPC else (error.strerror or str(error))
            kept = "the previous checkpoint is kept" if path.exists() else "no earlier checkpoint exists"
            raise CheckpointError(f"saving checkpoint {str(path)!r} failed: {reason}; {kept}") from None
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise


class RandomStates(Callback):
    """Saves and restores every random generator (python, numpy, torch CPU and CUDA) of every rank
    in plain tensors and ints, so that `torch.load(weights_only=True)` reads them and a resumed run
    draws the same random numbers as an uninterrupted one.

    Under several processes each rank first seeds its generators with the run's seed plus its rank
    (Lightning seeds every rank alike, so all would draw the same dropout and mixup), and a
    checkpoint holds the state of each rank, gathered when it is written.
    """

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._rank, self._world = 0, 1

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._rank, self._world = trainer.global_rank, trainer.world_size
        if stage == "fit" and self._world > 1:
            # not seed_everything: it would also change PL_GLOBAL_SEED, which seeds the distributed
            # sampler, and every rank must shuffle alike to draw disjoint shards
            _seed_generators(int(os.environ.get("PL_GLOBAL_SEED", "0")) + self._rank)

    def state_dict(self) -> dict[str, Any]:
        mine = _generator_states()
        if self._world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * self._world
            torch.distributed.all_gather_object(gathered, mine)  # a collective: every rank writes a checkpoint
            return {"ranks": gathered}
        return {"ranks": [mine]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        # applied at train start: creating the resumed loader's iterator draws from the global
        # generator, which the interrupted run had already done before the checkpoint was taken
        self._pending = state

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._pending is None:
            return
        ranks = self._pending.get("ranks", [self._pending])  # checkpoints before per-rank states held one
        self._pending = None
        if len(ranks) == trainer.world_size:
            _restore_generators(ranks[trainer.global_rank])
            return
        log.warning(
            "the checkpoint holds random states of %d process(es) but this run has %d: each rank is "
            "seeded afresh (training goes on, without bit-exact random draws)",
            len(ranks),
            trainer.world_size,
        )
        _seed_generators(
            int(os.environ.get("PL_GLOBAL_SEED", "0")) + 1_000_003 * (trainer.global_rank + 1) + trainer.global_step
        )


def _seed_generators(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also every CUDA device's generator


def _generator_states() -> dict[str, Any]:
    version, keys, position, has_gauss, gauss = np.random.get_state()
    python_version, python_state, python_gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy_keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "numpy_position": int(position),
        "numpy_has_gauss": int(has_gauss),
        "numpy_gauss": float(gauss),
        "python_version": int(python_version),
        "python_state": torch.tensor(python_state, dtype=torch.int64),
        "python_gauss": python_gauss,
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _restore_generators(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(
        (
            "MT19937",
            state["numpy_keys"].numpy().astype(np.uint32),
            state["numpy_position"],
            state["numpy_has_gauss"],
            state["numpy_gauss"],
        )
    )
    random.setstate((state["python_version"], tuple(int(v) for v in state["python_state"]), state["python_gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class StepCheckpoint(Callback):
    """Writes `last.ckpt` every N optimizer steps (mid-epoch), besides the per-epoch checkpoints.

    With the stateful data loader the checkpoint holds the loader's position, so a resumed
    run continues inside the epoch instead of repeating or skipping batches.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int) -> None:
        self.dirpath = Path(dirpath)
        self.every_n_train_steps = every_n_train_steps

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_index: int
    ) -> None:
        step = trainer.global_step
        if self.every_n_train_steps > 0 and step > 0 and step % self.every_n_train_steps == 0:
            trainer.save_checkpoint(self.dirpath / LAST_CHECKPOINT)


class PreemptionCheckpoint(Callback):
    """On SIGTERM (how clusters preempt), Lightning stops after the current batch; this saves
    `last.ckpt` first, so `--ckpt_path last` resumes from exactly there."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self.saved_path: Path | None = None

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        from lightning.pytorch.utilities.exceptions import SIGTERMException

        if isinstance(exception, SIGTERMException):
            self.saved_path = self.dirpath / LAST_CHECKPOINT
            trainer.save_checkpoint(self.saved_path)
            log.warning(
                "SIGTERM: saved %s at step %d; resume with --ckpt_path last", self.saved_path, trainer.global_step
            )


class NonFiniteLossGuard(Callback):
    """Stops training after a NaN or infinite training loss, before any checkpoint of the damaged
    weights is written; the last good checkpoint stays in place.

    Reading the loss back every step would make the host wait for the device each step, so the
    step only records, on the device, the first step whose loss was not finite; the record is read
    when the logs are written (every `log_every_n_steps`), before every checkpoint is saved (by any
    callback), and when training ends.
    """

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)
        self._first_bad_step: torch.Tensor | None = None  # () int64 on the device, -1 while all losses are finite
        self._first_bad_loss: torch.Tensor | None = None

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_index: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            return
        loss = loss.detach().float()
        if self._first_bad_step is None or self._first_bad_step.device != loss.device:
            self._first_bad_step = torch.full((), -1, dtype=torch.int64, device=loss.device)
            self._first_bad_loss = torch.zeros((), device=loss.device)
        first = (self._first_bad_step < 0) & ~torch.isfinite(loss).all()
        self._first_bad_step = torch.where(first, trainer.global_step, self._first_bad_step)
        self._first_bad_loss = torch.where(first, loss.reshape(-1)[0], self._first_bad_loss)
        if log_due(trainer):
            self.check(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]) -> None:
        self.check(trainer)  # raising here stops the save before anything is written

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.check(trainer)

    def check(self, trainer: L.Trainer) -> None:
        """Raises TrainingError if any rank has seen a non-finite loss (reads the device: call rarely)."""
        if self._first_bad_step is None:
            return
        step = int(self._first_bad_step)
        seen = trainer.strategy.reduce_boolean_decision(step >= 0, all=False) if trainer.world_size > 1 else step >= 0
        if not seen:
            return
        last = self.dirpath / LAST_CHECKPOINT
        kept = f"the last good checkpoint is {last}" if last.exists() else "no checkpoint had been written yet"
        where = f"({float(self._first_bad_loss)}) at step {step}" if step >= 0 else "on another rank"
        raise TrainingError(f"non-finite train/loss {where}; training stopped, {kept}")
