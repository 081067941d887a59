"""Losing nothing: atomic checkpoint writes, random states in checkpoints, step checkpoints,
a checkpoint on SIGTERM (preemption), and a stop on a non-finite loss."""

from __future__ import annotations

import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from vitlight.errors import CheckpointError, VitlightError
from vitlight.files import write_atomic
from vitlight.syncs import log_due

log = logging.getLogger(__name__)

LAST_CHECKPOINT = "last.ckpt"


class TrainingError(VitlightError):
    """Training cannot go on (a non-finite loss)."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes to a temporary file in the same folder, flushes and fsyncs it, then renames it over
    the target: a kill or a full disk during a save never leaves a truncated checkpoint in place
    of the previous good one."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        write_atomic(path, lambda stream: torch.save(checkpoint, stream), what="checkpoint", error=CheckpointError)


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


class StepCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint set to write only `last.ckpt` mid-epoch, every `every_n_minutes` of
    training (vitlight's default: 10) and/or every `every_n_train_steps` optimizer steps, besides the
    per-epoch checkpoints of the experiment's own ModelCheckpoint.

    A step checkpoint stops the training thread while it is written (0.3 GB for ResNet-50 with AdamW,
    fsynced): by the clock its cost is a fixed, small share of the time whatever the step time
    (bench/checkpoint_share.py), where every 200 steps cost 3-15 % of a fast GPU's time.

    Saves fall on optimizer-step boundaries (not inside gradient accumulation), once per step. With
    the stateful data loader the checkpoint holds the loader's position, so a resumed run continues
    inside the epoch instead of repeating or skipping batches; the clock restarts with the resumed
    run. Under several processes rank 0's clock decides, broadcast once every `log_every_n_steps`
    optimizer steps (Lightning's own `train_time_interval` broadcasts every batch: a device sync per
    step). Every save first asks NonFiniteLossGuard (its `on_save_checkpoint`), so damaged weights
    are never written.
    """

    def __init__(self, dirpath: str, every_n_train_steps: int = 0, every_n_minutes: float = 0.0) -> None:
        super().__init__(
            dirpath=dirpath,
            every_n_train_steps=every_n_train_steps,
            every_n_epochs=0,  # only mid-epoch: the experiment's ModelCheckpoint saves after validation
            save_top_k=0,
            save_last=True,
            enable_version_counter=False,  # the experiment's ModelCheckpoint writes the same last.ckpt
        )
        self.every_seconds = 60.0 * every_n_minutes
        self.clock = time.monotonic
        self._clock_start = self.clock()
        self._step_seen = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._clock_start, self._step_seen = self.clock(), trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_index: int
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_index)  # the step trigger
        stepped, self._step_seen = trainer.global_step != self._step_seen, trainer.global_step
        if self.every_seconds <= 0 or not stepped or self._should_skip_saving_checkpoint(trainer):
            return
        if not self._clock_due(trainer):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
        self._clock_start = self.clock()

    def _clock_due(self, trainer: L.Trainer) -> bool:
        due = self.clock() - self._clock_start >= self.every_seconds
        if trainer.world_size <= 1:
            return due
        every = max(1, int(trainer.log_every_n_steps or 1))
        if trainer.global_step % every != 0:
            return False
        return bool(trainer.strategy.broadcast(due, src=0))


class PreemptionCheckpoint(Callback):
    """On SIGTERM (how clusters preempt), Lightning stops after the current batch; this saves
    `last.ckpt` first, so `--ckpt_path last` resumes from exactly there.

    Written here because Lightning's OnExceptionCheckpoint (and ModelCheckpoint's save_on_exception)
    saves on every exception: also when NonFiniteLossGuard stops a run on a NaN loss, which would
    put the damaged weights in place of the last good checkpoint, and on a full disk or a bug.
    This saves on SIGTERM alone, under the name `--ckpt_path last` looks for.
    """

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
