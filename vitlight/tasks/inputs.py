"""What a task does to a batch once it is on the device: the data module's batch stage.

Loaders hand over uint8 images; the task finishes them in `on_after_batch_transfer` with the
data module's `device_finish` (train transform while training, eval transform otherwise).
"""

from __future__ import annotations

from typing import Any

import torch

from vitlight.errors import ConfigError


def batch_stage(trainer: Any, train: bool | None = None):
    """The running data module's DeviceFinish for the trainer's current stage."""
    datamodule = getattr(trainer, "datamodule", None)
    if datamodule is None or not hasattr(datamodule, "device_finish"):
        raise ConfigError(
            "uint8 image batches are finished on the device by a vitlight data module; "
            "run with a vitlight.data module (--data ...), or hand the model float images"
        )
    return datamodule.device_finish(trainer.training if train is None else train)


def augmented_uint8_batch(trainer: Any, batch: Any) -> Any:
    """(images, labels, ...) with the data module's flips and crops applied to uint8 images on the
    device (while training), left uint8: for tasks that read pixels, not normalized inputs."""
    images, labels = batch[0], batch[1]
    if images.dtype == torch.uint8:
        images = batch_stage(trainer).augment(images)
    return (images, labels, *batch[2:])
