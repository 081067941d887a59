"""Callbacks that tests put into real runs."""

from __future__ import annotations

import os
import signal
import time

import lightning as L
from lightning.pytorch.callbacks import Callback


class KillAtStep(Callback):
    """SIGKILLs its own process after optimizer step `step` (after vitlight's step checkpoint was written)."""

    def __init__(self, step: int, signal_name: str = "SIGKILL") -> None:
        self.step = step
        self.signal_name = signal_name

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_index: int
    ) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal_name))


class PauseAtStep(Callback):
    """Writes `marker` after optimizer step `step` (after vitlight's step checkpoint) and waits there, so that
    a test can kill the process from outside at a known point."""

    def __init__(self, step: int, marker: str, wait_s: float = 600.0) -> None:
        self.step = step
        self.marker = marker
        self.wait_s = wait_s

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_index: int
    ) -> None:
        if trainer.global_step == self.step:
            open(self.marker, "w").close()
            time.sleep(self.wait_s)


class PoisonLossAtStep(Callback):
    """Makes the training loss NaN from optimizer step `step` on (as a diverging run would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_index: int) -> None:
        if trainer.global_step >= self.step:
            batch[0].fill_(float("nan"))


class RecordBatches(Callback):
    """Appends each training batch's fingerprint and the RNG state's to a file (for debugging resumes)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch, batch_index: int) -> None:
        import torch

        with open(self.path, "a") as stream:
            stream.write(
                f"{trainer.global_step} {batch_index} {float(batch[0].double().sum()):.6f} {batch[1].tolist()} "
                f"{__import__('zlib').crc32(torch.get_rng_state().numpy().tobytes())}\n"
            )


class CountHostSyncs(Callback):
    """Counts, per training step, the calls from vitlight's code that would make the host wait for
    a GPU (vitlight.syncs.HostSyncCounter), and writes them to `path` as JSON when training ends.

    Window k runs from the end of step k to the end of step k+1, so it holds one of everything a
    step does (loading and finishing the batch, forward, backward, optimizer, every callback and
    module hook); the first window (lazy set-up) and what follows the last step are not counted.
    """

    def __init__(self, path: str) -> None:
        from vitlight.syncs import HostSyncCounter

        self.path = path
        self.counter = HostSyncCounter(only_from="vitlight")
        self.counter.paused = True
        self.windows: list[list] = []
        self._entered = False

    def on_train_start(self, trainer, pl_module) -> None:
        self.counter.__enter__()
        self._entered = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_index: int) -> None:
        if not self.counter.paused:
            self.windows.append(list(self.counter.events))
        self.counter.reset()
        self.counter.paused = trainer.global_step < 1  # from the end of the first step on

    def on_train_end(self, trainer, pl_module) -> None:
        import json

        if self._entered:
            self.counter.__exit__(None, None, None)
            self._entered = False
        with open(self.path, "w") as stream:
            json.dump(self.windows, stream)


class RecordRandomDraws(Callback):
    """Writes, per rank, digests of the torch and numpy generator states at the first training step
    (those feed dropout, the device-side flips and crops, mixup and cutmix)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def on_train_batch_start(self, trainer, pl_module, batch, batch_index: int) -> None:
        import hashlib
        import json

        import numpy as np
        import torch

        if trainer.global_step != 0:
            return
        digest = {
            "torch": hashlib.sha256(torch.get_rng_state().numpy().tobytes()).hexdigest(),
            "numpy": hashlib.sha256(np.random.get_state()[1].tobytes()).hexdigest(),
        }
        os.makedirs(self.folder, exist_ok=True)
        with open(os.path.join(self.folder, f"rank{trainer.global_rank}.json"), "w") as stream:
            json.dump(digest, stream)


class KillProcessGroupAtStep(Callback):
    """Rank 0 SIGKILLs its whole process group (every rank) after optimizer step `step`, once the
    step checkpoint is written: a node lost mid-epoch. Start the command in its own session."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_index: int) -> None:
        if trainer.global_step == self.step and trainer.is_global_zero:
            os.killpg(os.getpgid(0), signal.SIGKILL)


class KillDuringSave(Callback):
    """SIGKILLs its own process in the middle of writing the first checkpoint saved after optimizer step
    `step` has ended: the atomic write's temporary file holds part of a checkpoint, as after a kill at the
    wrong moment."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_index: int
    ) -> None:
        if trainer.global_step != self.step:
            return
        from vitlight.files import write_atomic

        def half_then_kill(stream) -> None:
            stream.write(b"\0" * 100_000)
            stream.flush()
            os.fsync(stream.fileno())
            os.kill(os.getpid(), signal.SIGKILL)

        trainer.strategy.checkpoint_io.save_checkpoint = lambda checkpoint, path, storage_options=None: write_atomic(
            path, half_then_kill, what="checkpoint"
        )
