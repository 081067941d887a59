"""LightningModules: loss, metrics, optimizers, logging."""

from vitlight.tasks.classification import ImageClassifier

__all__ = ["ImageClassifier"]
