"""LightningModules: loss, metrics, optimizers, logging."""

from vitlight.tasks.classification import ImageClassifier
from vitlight.tasks.pixel_pretrain import PixelPretrainer
from vitlight.tasks.probe import LinearProbe

__all__ = ["ImageClassifier", "PixelPretrainer", "LinearProbe"]
