"""A callback for subprocess tests: which optimizer steps a checkpoint was saved at, per rank."""

from __future__ import annotations

import json
import os

from lightning.pytorch.callbacks import Callback


class RecordSaveSteps(Callback):
    """Appends `trainer.global_step` of every checkpoint save to `<folder>/rank<R>.json`."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.steps: list[int] = []

    def on_save_checkpoint(self, trainer, pl_module, checkpoint) -> None:
        self.steps.append(int(trainer.global_step))
        os.makedirs(self.folder, exist_ok=True)
        with open(os.path.join(self.folder, f"rank{trainer.global_rank}.json"), "w") as stream:
            json.dump(self.steps, stream)
