"""One classification LightningModule for every timm backbone: ViT, DeiT, Swin, PVT, ResNet, ResNeXt, BiT."""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from vitlight.checkpoints import without_compile_wrapper
from vitlight.errors import ConfigError
from vitlight.syncs import log_due
from vitlight.tasks.backbones import apply_cifar_stem, create_backbone, is_convnet
from vitlight.tasks.inputs import batch_stage
from vitlight.tasks.optim import build_optimizer, scale_learning_rate, weight_decay_groups
from vitlight.tasks.schedules import WarmupCosine, complete_schedules
from vitlight.tasks.weights import load_backbone_weights

log = logging.getLogger(__name__)


def _accuracy_metrics(num_classes: int, validate_args: bool = True) -> MetricCollection:
    metrics = {"acc": MulticlassAccuracy(num_classes, top_k=1, average="micro", validate_args=validate_args)}
    if num_classes > 5:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes, top_k=5, average="micro", validate_args=validate_args)
    return MetricCollection(metrics)


class ImageClassifier(L.LightningModule):
    """Image classification with any timm backbone; the backbone is a choice, not a fork."""

    def __init__(
        self,
        model_name: str = "vit_tiny_patch16_224",
        model_kwargs: dict[str, Any] | None = None,
        num_classes: int = 1000,
        image_size: int = 224,
        channels: int = 3,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = WarmupCosine,
        base_batch_size: int | None = None,
        label_smoothing: float = 0.0,
        mixup_alpha: float = 0.0,
        cutmix_alpha: float = 0.0,
        ema_decay: float | None = None,
        cifar_stem: bool = False,
        pretrained: bool = False,
        checkpoint_path: str | None = None,
        freeze_backbone: bool = False,
        channels_last: bool | None = None,
        compile: bool = False,
    ) -> None:
        """
        Args:
            model_name: a timm model name (`timm.list_models()`), e.g. vit_base_patch16_224, resnet50.
            model_kwargs: keyword arguments for timm.create_model (patch_size, depth, embed_dim, drop_path_rate, ...).
            num_classes: linked from the data module.
            image_size: linked from the data module; passed as img_size to models that take it.
            channels: linked from the data module; passed as in_chans.
            optimizer: optimizer class and arguments; weight decay applies only to weights with >= 2 dims.
            lr_scheduler: schedule stepped every optimizer step; WarmupCosine learns its length from the trainer.
            base_batch_size: the optimizer's lr is the paper's at this global batch (DeiT: 5e-4 at 512, ViT: 4096)
                and is scaled linearly to devices x batch_size x accumulate_grad_batches; the resolved rate is
                logged (hyperparameters lr_resolved, global_batch_size). None uses the lr as written.
            label_smoothing: cross-entropy label smoothing.
            mixup_alpha: timm Mixup alpha (0 disables).
            cutmix_alpha: timm CutMix alpha (0 disables).
            ema_decay: keep an exponential moving average of the weights, evaluated alongside (val/acc_ema).
            cifar_stem: 3x3 stride-1 stem without max-pool for ResNet/ResNeXt/BiT on 32x32 images.
            pretrained: start from timm's pretrained weights (needs the hub).
            checkpoint_path: start from a vitlight checkpoint or a timm/safetensors weights file; position
                embeddings are interpolated to image_size, a head of another size is replaced.
            freeze_backbone: train only the classifier head (linear probe).
            channels_last: NHWC memory format; None means on for CNNs on a GPU.
            compile: torch.compile the backbone.
        """
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"], logger=False)
        if num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {num_classes}")
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self.backbone = create_backbone(model_name, num_classes, image_size, channels, model_kwargs, pretrained)
        if cifar_stem:
            apply_cifar_stem(self.backbone, channels)
        if checkpoint_path:
            load_backbone_weights(self.backbone, checkpoint_path)
        if freeze_backbone:
            self._freeze_all_but_head()
        self.mixup = self._build_mixup(mixup_alpha, cutmix_alpha, label_smoothing, num_classes)
        self.ema = self._build_ema(ema_decay)
        # no label checks on the training metrics: they cost a device sync every step, and the labels
        # were already used by the loss (evaluation keeps the checks)
        self.train_metrics = _accuracy_metrics(num_classes, validate_args=False).clone(prefix="train/")
        self.val_metrics = _accuracy_metrics(num_classes).clone(prefix="val/")
        self.val_ema_metrics = _accuracy_metrics(num_classes).clone(prefix="val/", postfix="_ema")
        self.test_metrics = _accuracy_metrics(num_classes).clone(prefix="test/")
        self.val_loss, self.test_loss = MeanMetric(), MeanMetric()
        self.confusion = MulticlassConfusionMatrix(num_classes)
        self.test_per_class_accuracy: dict[str, float] = {}
        self._is_convnet = is_convnet(self.backbone)  # walked once: forward runs every step
        self._window_started: float | None = None
        self._window_images = 0

    # ----- construction helpers -------------------------------------------------------
    def _freeze_all_but_head(self) -> None:
        head = self.backbone.get_classifier() if hasattr(self.backbone, "get_classifier") else None
        if not isinstance(head, nn.Module) or not list(head.parameters()):
            raise ConfigError(
                f"model.freeze_backbone needs a model with a classifier head; {self.hparams.model_name} has none"
            )
        for parameter in self.backbone.parameters():
            parameter.requires_grad = False
        for parameter in head.parameters():
            parameter.requires_grad = True

    def _build_mixup(self, mixup_alpha: float, cutmix_alpha: float, smoothing: float, num_classes: int):
        if mixup_alpha <= 0 and cutmix_alpha <= 0:
            return None
        from timm.data import Mixup

        return Mixup(
            mixup_alpha=mixup_alpha, cutmix_alpha=cutmix_alpha, label_smoothing=smoothing, num_classes=num_classes
        )

    def _build_ema(self, decay: float | None):
        if decay is None:
            return None
        if not 0.0 < decay < 1.0:
            raise ConfigError(f"model.ema_decay must be in (0, 1), got {decay}")
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(self.backbone, decay=decay)
        # the average is updated by hand, never by gradients: DDP must not wait for its gradients
        ema.requires_grad_(False)
        return ema

    def configure_model(self) -> None:
        # compiled in place: the backbone stays the same module, so checkpoint keys do not change
        if self.hparams.compile and getattr(self.backbone, "_compiled_call_impl", None) is None:
            self.backbone.compile()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["state_dict"] = without_compile_wrapper(checkpoint["state_dict"])

    @property
    def uses_channels_last(self) -> bool:
        setting = self.hparams.channels_last
        if setting is None:
            return self.device.type == "cuda" and self._is_convnet
        return setting

    def on_fit_start(self) -> None:
        if self.uses_channels_last:
            self.backbone.to(memory_format=torch.channels_last)

    # ----- forward and steps ----------------------------------------------------------
    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 images from the loader -> augmented, normalized float32, on the device."""
        images, labels = batch[0], batch[1]
        if images.dtype == torch.uint8:
            images = batch_stage(self.trainer)(images)
        return (images, labels, *batch[2:])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.uses_channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return self.backbone(images)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        images, labels = batch
        if self.mixup is not None and len(labels) % 2 == 0:  # timm Mixup pairs images, so it needs an even batch
            mixed, soft_targets = self.mixup(images, labels)
            logits = self(mixed)
            loss = torch.sum(-soft_targets * F.log_softmax(logits, dim=-1), dim=-1).mean()
        else:
            logits = self(images)
            loss = F.cross_entropy(logits, labels, label_smoothing=self.hparams.label_smoothing)
        self.train_metrics.update(logits.detach(), labels)
        self.log("train/loss", loss, prog_bar=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True)
        return loss

    def _evaluate(self, batch: tuple[torch.Tensor, torch.Tensor], stage: str) -> None:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        metrics, mean_loss = (
            (self.val_metrics, self.val_loss) if stage == "val" else (self.test_metrics, self.test_loss)
        )
        metrics.update(logits, labels)
        mean_loss.update(loss, weight=len(labels))
        self.log(f"{stage}/loss", mean_loss, on_step=False, on_epoch=True, prog_bar=stage == "val")
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=stage == "val")
        if stage == "val" and self.ema is not None:
            self.val_ema_metrics.update(self.ema.module(images), labels)
            self.log_dict(self.val_ema_metrics, on_step=False, on_epoch=True)
        if stage == "test":
            self.confusion.update(logits, labels)

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        return self(batch[0]).softmax(dim=-1)

    # ----- hooks: EMA, throughput, frozen backbone, test-end report ---------------------
    def on_train_start(self) -> None:
        complete_schedules(self.trainer)

    def on_train_epoch_start(self) -> None:
        if self.hparams.freeze_backbone:  # a linear probe keeps normalisation statistics frozen too
            self.backbone.eval()
        self._window_started, self._window_images = time.perf_counter(), 0

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_index: int) -> None:
        if self.ema is not None:
            self.ema.update(self.backbone, step=self.global_step)
        # images/s over the steps since the last log: logging a Python number copies it to the
        # device, so it is logged only when the logs are written anyway
        self._window_images += len(batch[1])
        if log_due(self.trainer) and self._window_started is not None:
            elapsed = time.perf_counter() - self._window_started
            if elapsed > 0:
                self.log("train/throughput", self._window_images / elapsed, on_step=True, on_epoch=False)
            self._window_started, self._window_images = time.perf_counter(), 0

    def on_test_epoch_start(self) -> None:
        self.confusion.reset()

    def on_test_epoch_end(self) -> None:
        matrix = self.confusion.compute().cpu()
        per_class = matrix.diag().float() / matrix.sum(dim=1).clamp(min=1).float()
        names = self._class_names(len(per_class))
        self.test_per_class_accuracy = {name: round(float(acc), 6) for name, acc in zip(names, per_class)}
        from vitlight.logging_wandb import log_confusion_matrix

        log_confusion_matrix(self.loggers, matrix, names)

    def _class_names(self, count: int) -> list[str]:
        datamodule = getattr(self.trainer, "datamodule", None)
        classes = list(getattr(datamodule, "classes", []) or [])
        return classes if len(classes) == count else [str(i) for i in range(count)]

    # ----- optimisation ---------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.optimizer_factory, weight_decay_groups(self.backbone))
        if self.hparams.base_batch_size is not None:
            lr, batch = scale_learning_rate(optimizer, self.trainer, self.hparams.base_batch_size)
            log.info(
                "learning rate %.4g for global batch %d (the paper's rule: lr x batch / %d)",
                lr,
                batch,
                self.hparams.base_batch_size,
            )
            for logger in self.loggers:
                logger.log_hyperparams({"lr_resolved": lr, "global_batch_size": batch})
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)  # WarmupCosine gets its length in on_train_start
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
