"""LightningModules: loss, metrics, optimizers, logging."""

import lightning as L

from vitlight.cli_errors import register_choices
from vitlight.tasks.classification import ImageClassifier
from vitlight.tasks.pixel_pretrain import PixelPretrainer
from vitlight.tasks.probe import LinearProbe

__all__ = ["ImageClassifier", "PixelPretrainer", "LinearProbe"]

register_choices("model", list(globals().values()), L.LightningModule)
