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

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_index: int) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), getattr(signal, self.signal_name))


class PauseAtStep(Callback):
    """Writes `marker` after optimizer step `step` (after vitlight's step checkpoint) and waits there, so that
    a test can kill the process from outside at a known point."""

    def __init__(self, step: int, marker: str, wait_s: float = 600.0) -> None:
        self.step = step
        self.marker = marker
        self.wait_s = wait_s

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_index: int) -> None:
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
            stream.write(f"{trainer.global_step} {batch_index} {float(batch[0].double().sum()):.6f} {batch[1].tolist()} "
                         f"{__import__('zlib').crc32(torch.get_rng_state().numpy().tobytes())}\n")
