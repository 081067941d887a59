"""Linear probes on frozen features of iGPT and timm (ViT, CNN) checkpoints.

`LayerFeatures` turns any vitlight checkpoint's module into per-layer pooled features:
iGPT blocks (parameter-free LayerNorm, then the average over the sequence, as in the paper),
or timm's `forward_intermediates` (average over patches/positions, or the class token).
`fit_logistic_regression` is the full-batch L-BFGS multinomial logistic regression with the
L2 strength chosen on validation data (used by `vitlight probe`); `LinearProbe` is the same
probe for one layer as a LightningModule, trained by the standard trainer (`val/acc`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics.classification import MulticlassAccuracy

from vitlight.errors import CheckpointError, ConfigError
from vitlight.tasks.inputs import augmented_uint8_batch
from vitlight.tasks.optim import build_optimizer
from vitlight.tasks.schedules import WarmupCosine, complete_schedules

log = logging.getLogger(__name__)

DEFAULT_L2 = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
SMALL_PROBLEM = 8_000_000  # feature values below which the probe fits on one thread


class LayerFeatures(nn.Module):
    """Pooled features (B, D) of chosen layers of a frozen PixelPretrainer or ImageClassifier."""

    def __init__(self, module: L.LightningModule, pool: Literal["mean", "cls"] = "mean") -> None:
        super().__init__()
        self.module = module
        self.pool = pool
        self.is_igpt = hasattr(module, "tokenize") and hasattr(module, "model")
        self.normalize = None  # the data's uint8 -> float normalization (timm models), from attach_data
        if not self.is_igpt and not hasattr(module, "backbone"):
            raise ConfigError(
                f"cannot probe a {type(module).__name__}: expected a PixelPretrainer or an ImageClassifier checkpoint"
            )
        if pool not in ("mean", "cls"):
            raise ConfigError(f"probe pool must be 'mean' or 'cls', got {pool!r}")
        if pool == "cls" and (self.is_igpt or getattr(module.backbone, "num_prefix_tokens", 0) == 0):
            raise ConfigError(f"pool 'cls' needs a model with a class token; {self.name} has none, use pool 'mean'")

    @property
    def name(self) -> str:
        hparams = self.module.hparams
        return str(hparams.get("preset") if self.is_igpt else hparams.get("model_name"))

    @property
    def n_layers(self) -> int:
        if self.is_igpt:
            return self.module.model.n_layer
        backbone = self.module.backbone
        if hasattr(backbone, "blocks"):
            return len(backbone.blocks)
        return len(getattr(backbone, "feature_info", []))

    def layer_indices(self, layers: str | list[int]) -> list[int]:
        """'all', 'middle', or a list of indices (negative from the end) -> sorted non-negative indices."""
        n = self.n_layers
        if layers == "all":
            return list(range(n))
        if layers == "middle":
            return [n // 2]
        chosen = []
        for index in layers:
            if not -n <= int(index) < n:
                raise ConfigError(
                    f"probe layer {index} is out of range for the {n}-layer {self.name} (valid: 0..{n - 1}, -{n}..-1, "
                    "all)"
                )
            chosen.append(int(index) % n)
        return sorted(set(chosen))

    def attach_data(self, datamodule: Any, check_palette: bool = True) -> None:
        if self.is_igpt:
            self.module.attach_data(datamodule, check_palette)
            return
        self.normalize = datamodule.device_finish(train=False).normalize
        trained = self.module.hparams.get("image_size")
        if trained is not None and int(trained) != datamodule.image_size:
            raise ConfigError(
                f"the {self.name} checkpoint was trained on {trained} px images but the data gives "
                f"{datamodule.image_size} px; set data.image_size: {trained}"
            )

    @torch.no_grad()
    def forward(self, images: Tensor, layers: list[int]) -> dict[int, Tensor]:
        """images: uint8 (B, C, H, W) as the loaders serve them (timm models also take normalized floats)."""
        if self.is_igpt:
            tokens = self.module.tokenize(images)
            hidden = self.module.model.features(tokens, layers, normalize=True)  # {i: (B, L, C)}
            return {i: h.mean(dim=1) for i, h in hidden.items()}
        backbone = self.module.backbone
        if images.dtype == torch.uint8:
            if self.normalize is None:
                raise RuntimeError("attach_data(datamodule) must run before uint8 images can be normalized")
            images = self.normalize(images)
        kwargs = {"return_prefix_tokens": True} if self.pool == "cls" else {}
        outputs = backbone.forward_intermediates(images, indices=layers, intermediates_only=True, **kwargs)
        pooled = {}
        for index, output in zip(layers, outputs):
            if self.pool == "cls":
                pooled[index] = output[1][:, 0]  # (B, prefix, C) -> class token (B, C)
            elif output.dim() == 4:
                pooled[index] = output.mean(dim=(2, 3))  # (B, C, h, w) -> (B, C)
            else:
                pooled[index] = output.mean(dim=1)  # (B, N, C) -> (B, C)
        return pooled


# ----- full-batch logistic regression -------------------------------------------------------


@dataclass
class ProbeFit:
    weight: Tensor  # (D, K), on standardized features
    bias: Tensor  # (K,)
    mean: Tensor  # (D,) standardization of the inputs
    std: Tensor  # (D,)
    l2: float
    val_acc: float
    val_by_l2: dict[float, float]

    def logits(self, x: Tensor) -> Tensor:
        return ((x - self.mean) / self.std) @ self.weight + self.bias

    def accuracy(self, x: Tensor, y: Tensor) -> float:
        return float((self.logits(x).argmax(1) == y).float().mean())


def _lbfgs(x: Tensor, y: Tensor, weight: Tensor, bias: Tensor, l2: float, max_iter: int) -> None:
    """Minimizes mean cross-entropy + l2/2 * ||W||^2 in place."""
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-6,
        tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(x @ weight + bias, y) + 0.5 * l2 * weight.square().sum()
        loss.backward()
        return loss

    optimizer.step(closure)


def fit_logistic_regression(
    x_train: Tensor,
    y_train: Tensor,
    x_val: Tensor,
    y_val: Tensor,
    num_classes: int,
    l2_grid: tuple[float, ...] | list[float] = DEFAULT_L2,
    max_iter: int = 500,
) -> ProbeFit:
    """Multinomial logistic regression on standardized features, L2 strength chosen by validation accuracy.

    Strengths are tried from strongest to weakest, each warm-started from the previous
    solution; ties in validation accuracy go to the stronger regularization.
    """
    if len(x_train) == 0 or len(x_val) == 0:
        raise ConfigError("the linear probe needs training and validation images")
    x_train, x_val = x_train.double(), x_val.double()
    mean, std = x_train.mean(0), x_train.std(0).clamp(min=1e-6)
    xs, xv = (x_train - mean) / std, (x_val - mean) / std
    weight = torch.zeros(x_train.shape[1], num_classes, dtype=torch.float64, requires_grad=True)
    bias = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    threads = torch.get_num_threads()
    if xs.numel() < SMALL_PROBLEM:
        torch.set_num_threads(1)  # on small problems, thread hand-offs cost more than the arithmetic
    best: tuple[float, float, Tensor, Tensor] | None = None
    scores: dict[float, float] = {}
    try:
        with torch.enable_grad():
            for l2 in sorted(l2_grid, reverse=True):
                _lbfgs(xs, y_train, weight, bias, float(l2), max_iter)
                with torch.no_grad():
                    acc = float(((xv @ weight + bias).argmax(1) == y_val).double().mean())
                scores[float(l2)] = acc
                if best is None or acc > best[0]:
                    best = (acc, float(l2), weight.detach().clone(), bias.detach().clone())
    finally:
        torch.set_num_threads(threads)
    acc, l2, w, b = best
    return ProbeFit(weight=w, bias=b, mean=mean, std=std, l2=l2, val_acc=acc, val_by_l2=scores)


# ----- the probe as a LightningModule --------------------------------------------------------


@contextmanager
def _own_hyperparameters() -> Iterator[None]:
    """Lets a module built inside another's __init__ record its own init arguments.

    LightningCLI hands the outer module's arguments to `save_hyperparameters` through a context
    variable, which an inner LightningModule would otherwise take for its own.
    """
    from lightning.pytorch.core.mixins import hparams_mixin

    token = hparams_mixin._given_hyperparameters.set(None)
    try:
        yield
    finally:
        hparams_mixin._given_hyperparameters.reset(token)


class LinearProbe(L.LightningModule):
    """A linear classifier on one frozen layer's pooled features, trained by the Lightning loop.

    The source is a vitlight checkpoint (iGPT or timm classifier). Without one, a randomly
    initialized iGPT of ``preset`` is probed: the random-features baseline.
    """

    def __init__(
        self,
        checkpoint_path: str | None = None,
        layer: int | None = None,
        pool: Literal["mean", "cls"] = "mean",
        preset: str = "igpt-tiny",
        palette_size: int = 16,
        num_classes: int = 10,
        image_size: int = 32,
        channels: int = 3,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = WarmupCosine,
        source: dict[str, Any] | None = None,
    ) -> None:
        """
        Args:
            checkpoint_path: vitlight checkpoint whose frozen features are probed (PixelPretrainer or ImageClassifier),
                or OpenAI's ImageGPT: a transformers folder or openai/imagegpt-small|medium|large.
            layer: block index (negative from the end); None: the middle block for iGPT (the paper's
                best region), the last for other models.
            pool: "mean" over positions/patches, or "cls" (the class token of a ViT).
            preset: iGPT size of the random-features baseline (only without checkpoint_path).
            palette_size: palette of the random-features baseline (only without checkpoint_path).
            num_classes: linked from the data module.
            image_size: linked from the data module.
            channels: linked from the data module.
            optimizer: optimizer of the linear head.
            lr_scheduler: schedule stepped every optimizer step.
            source: filled in from checkpoint_path (class path and init args of the probed module), so
                that a probe checkpoint can be rebuilt without the original file; leave unset.
        """
        super().__init__()
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        module, source = self._source(checkpoint_path, source, preset, palette_size, num_classes, image_size, channels)
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.hparams["source"] = source
        self.features = LayerFeatures(module, pool)
        for parameter in module.parameters():
            parameter.requires_grad = False
        n = self.features.n_layers
        default = n // 2 if self.features.is_igpt else n - 1
        self.layer = self.features.layer_indices([default if layer is None else layer])[0]
        with torch.no_grad():
            width = self._width(module, channels, image_size)
        self.norm = nn.BatchNorm1d(width, affine=False)  # standardization before the linear layer, as in MAE
        self.head = nn.Linear(width, num_classes)
        self.accuracy = nn.ModuleDict(
            {f"{s}_acc": MulticlassAccuracy(num_classes, average="micro") for s in ("train", "val", "test")}
        )

    @staticmethod
    def _source(checkpoint_path, source, preset, palette_size, num_classes, image_size, channels):
        with _own_hyperparameters():
            return LinearProbe._build_source(
                checkpoint_path, source, preset, palette_size, num_classes, image_size, channels
            )

    @staticmethod
    def _build_source(checkpoint_path, source, preset, palette_size, num_classes, image_size, channels):
        from vitlight.checkpoints import import_class, load_module
        from vitlight.models.igpt_transformers import is_transformers_folder, looks_like_hub_name

        if checkpoint_path and (is_transformers_folder(checkpoint_path) or looks_like_hub_name(checkpoint_path)):
            from vitlight.tasks.pixel_pretrain import PixelPretrainer  # OpenAI's ImageGPT: folder or hub name

            module = PixelPretrainer.from_transformers(checkpoint_path)
            hparams = {k: v for k, v in dict(module.hparams).items() if k != "_instantiator"}
            return module, {"class_path": "vitlight.tasks.pixel_pretrain.PixelPretrainer", "init_args": hparams}
        if checkpoint_path:
            module, config = load_module(checkpoint_path)
            hparams = {k: v for k, v in dict(module.hparams).items() if k != "_instantiator"}
            return module, {"class_path": config["model"]["class_path"], "init_args": hparams}
        if source:
            init = {**source["init_args"], "checkpoint_path": None}
            if "pretrained" in init:
                init["pretrained"] = False
            return import_class(source["class_path"])(**init), source
        from vitlight.tasks.pixel_pretrain import PixelPretrainer

        palette = "uniform" if channels == 1 else "kmeans"
        module = PixelPretrainer(
            preset=preset,
            palette=palette,
            palette_size=palette_size,
            num_classes=num_classes,
            image_size=image_size,
            channels=channels,
        )
        return module, None

    def _width(self, module: L.LightningModule, channels: int, image_size: int) -> int:
        if self.features.is_igpt:
            return module.model.hidden_size
        images = torch.zeros(1, channels, image_size, image_size)
        module.eval()
        return self.features(images, [self.layer])[self.layer].shape[1]

    @property
    def source(self) -> L.LightningModule:
        return self.features.module

    def train(self, mode: bool = True) -> LinearProbe:
        super().train(mode)
        self.source.eval()  # frozen: dropout off, normalization statistics fixed
        return self

    def setup(self, stage: str) -> None:
        self.features.attach_data(self.trainer.datamodule)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The data module's train-time flips and crops on the uint8 pixels; LayerFeatures normalizes."""
        return augmented_uint8_batch(self.trainer, batch)

    def forward(self, images: Tensor) -> Tensor:
        return self.head(self.norm(self.features(images, [self.layer])[self.layer].float()))

    def _step(self, batch: tuple[Tensor, Tensor], stage: str) -> Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        self.accuracy[f"{stage}_acc"].update(logits.detach(), labels)
        self.log(
            f"{stage}/loss",
            loss,
            on_step=stage == "train",
            on_epoch=stage != "train",
            prog_bar=True,
            batch_size=len(labels),
        )
        self.log(f"{stage}/acc", self.accuracy[f"{stage}_acc"], on_step=False, on_epoch=True, prog_bar=stage != "test")
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_index: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_index: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: tuple[Tensor, Tensor], batch_index: int) -> None:
        self._step(batch, "test")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if hasattr(self.source, "on_save_checkpoint"):
            self.source.on_save_checkpoint(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.features.is_igpt:
            try:
                self.source.on_load_checkpoint(checkpoint)
            except CheckpointError:
                raise CheckpointError("the probe checkpoint holds no palette of its iGPT source") from None

    def on_train_start(self) -> None:
        complete_schedules(self.trainer)

    def configure_optimizers(self) -> Any:
        parameters = [p for p in self.parameters() if p.requires_grad]
        optimizer = build_optimizer(self.optimizer_factory, parameters)
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)  # WarmupCosine gets its length in on_train_start
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
