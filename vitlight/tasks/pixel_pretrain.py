"""ImageGPT pretraining (autoregressive or BERT), fine-tuning with the combined objective, and completion.

Images become palette tokens inside the module: the loader's uint8 pixels (flipped or cropped on
the device while training, as the data module says) are quantized with the run's palette (fitted
once per dataset, cached, and stored in every checkpoint under ``igpt_palette``).

Objectives: ``autoregressive`` is next-pixel cross-entropy over all H*W positions;
``bert`` replaces ``mask_fraction`` of the positions by [MASK] and scores those positions only.
Logged per stage: ``loss`` (the optimized objective), ``nats_per_token`` (the generative loss in
nats per token: the paper's and OpenAI's released models' convention) and ``bits_per_token``
(the same / ln 2; one token is one pixel's palette colour, not one 8-bit sub-pixel). With ``classifier_weight > 0`` a
linear head on the average-pooled final features is trained with
``classifier_weight * cross_entropy + generative_weight * generative_loss`` (the paper's
fine-tuning objective) and ``acc``, ``cls_loss`` and ``gen_loss`` are logged as well.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any, Literal

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor, nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from vitlight.errors import CheckpointError, ConfigError
from vitlight.models.igpt import IGPT_PRESETS, IGPTConfig, ImageGPT
from vitlight.models.igpt_transformers import PALETTE_KIND as OPENAI_PALETTE_KIND
from vitlight.models.palette import Palette
from vitlight.tasks.inputs import augmented_uint8_batch
from vitlight.tasks.optim import build_optimizer, weight_decay_groups
from vitlight.tasks.pixel_weights import PALETTE_KEY, load_pixel_weights
from vitlight.tasks.pixels import Tokenizer, bits_per_token, channels_last, check_palette_settings, data_palette
from vitlight.tasks.schedules import WarmupCosine, complete_schedules

log = logging.getLogger(__name__)

# IGPTConfig architecture options per PixelPretrainer.architecture
OPENAI_ARCHITECTURE: dict[str, dict[str, Any]] = {
    "vitlight": {},
    "openai": {"norm": "rmsnorm", "activation": "quick_gelu", "sos_in_token_embedding": True},
}
STAGES = ("train", "val", "test")


class PixelPretrainer(L.LightningModule):
    """ImageGPT over palette tokens: generative pretraining, optionally with a classification head."""

    def __init__(
        self,
        preset: str = "igpt-tiny",
        n_layer: int | None = None,
        n_embd: int | None = None,
        n_head: int | None = None,
        objective: Literal["autoregressive", "bert"] = "autoregressive",
        mask_fraction: float = 0.15,
        dropout: float = 0.0,
        n_positions: int | None = None,
        architecture: Literal["vitlight", "openai"] = "vitlight",
        palette: Literal["kmeans", "uniform"] = "kmeans",
        palette_size: int = 512,
        palette_seed: int = 0,
        palette_images: int = 5000,
        palette_pixels: int = 200_000,
        palette_check: bool = True,
        classifier_weight: float = 0.0,
        generative_weight: float = 1.0,
        checkpoint_path: str | None = None,
        num_classes: int = 10,
        image_size: int = 32,
        channels: int = 3,
        optimizer: OptimizerCallable = torch.optim.AdamW,
        lr_scheduler: LRSchedulerCallable | None = WarmupCosine,
        compile: bool = False,
    ) -> None:
        """
        Args:
            preset: ImageGPT size (igpt-tiny, igpt-mini, igpt-s, igpt-m, igpt-l, igpt-xl).
            n_layer: overrides the preset's depth.
            n_embd: overrides the preset's width.
            n_head: overrides the preset's attention heads.
            objective: "autoregressive" (next pixel, raster order) or "bert" (masked pixels).
            mask_fraction: share of positions masked by the BERT objective (the paper's 0.15).
            dropout: dropout on attention weights and residual branches.
            n_positions: longest token sequence; None means image_size**2.
            architecture: "vitlight" (LayerNorm, exact GELU, separate SOS vector) or "openai" (the released
                models: RMS-style norm without bias, quick-GELU, SOS as the token embedding's last row).
            palette: "kmeans" (fitted on the training pool, cached) or "uniform" (equal bins per channel).
            palette_size: palette entries = vocabulary size (the paper's 512; at most 256 for grey data).
            palette_seed: seed of the pixel sample and of k-means.
            palette_images: training images the k-means pixels are drawn from.
            palette_pixels: pixels k-means is fitted on.
            palette_check: refuse data whose own palette differs from the one this model was trained with.
            classifier_weight: weight of the classification loss (0: pure generative pretraining, no head).
            generative_weight: weight of the generative loss (0 with a classifier: plain fine-tuning).
            checkpoint_path: start from the iGPT weights and palette of a vitlight checkpoint, or of OpenAI's
                released model: a transformers folder or a hub name such as openai/imagegpt-small (with
                architecture: openai and the model's shape; `PixelPretrainer.from_transformers` fills both in).
            num_classes: linked from the data module.
            image_size: linked from the data module.
            channels: linked from the data module.
            optimizer: optimizer class and arguments; weight decay applies only to weights with >= 2 dims.
            lr_scheduler: schedule stepped every optimizer step; WarmupCosine learns its length from the trainer.
            compile: torch.compile the ImageGPT (in place: checkpoint keys stay those of the plain model).
        """
        super().__init__()
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.optimizer_factory = optimizer
        self.scheduler_factory = lr_scheduler
        self._check_arguments()
        self.model = ImageGPT(self._config())
        self.classifier = nn.Linear(self.model.hidden_size, num_classes) if classifier_weight > 0 else None
        self.palette: Palette | None = None
        self.tokenizer: Tokenizer | None = None
        self.mean_loss = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})  # weighted by images
        self.mean_nll = nn.ModuleDict({stage: MeanMetric() for stage in ("val", "test")})  # weighted by scored tokens
        if self.classifier is not None:
            self.accuracy = nn.ModuleDict(
                {f"{stage}_acc": MulticlassAccuracy(num_classes, average="micro") for stage in STAGES}
            )
        if checkpoint_path:
            self._load_pretrained(checkpoint_path)

    def configure_model(self) -> None:
        if self.hparams.compile and getattr(self.model, "_compiled_call_impl", None) is None:
            self.model.compile()

    # ----- construction ---------------------------------------------------------------
    def _check_arguments(self) -> None:
        h = self.hparams
        if h.preset not in IGPT_PRESETS:
            raise ConfigError(f"model.preset {h.preset!r} is not an ImageGPT preset; valid: {', '.join(IGPT_PRESETS)}")
        if h.architecture not in OPENAI_ARCHITECTURE:
            raise ConfigError(
                f"model.architecture must be one of {', '.join(OPENAI_ARCHITECTURE)}, got {h.architecture!r}"
            )
        if h.architecture == "openai" and h.objective != "autoregressive":
            raise ConfigError(
                "model.architecture 'openai' is autoregressive (its SOS vector is a token row); set model.objective: "
                "autoregressive"
            )
        if h.objective not in ("autoregressive", "bert"):
            raise ConfigError(f"model.objective must be 'autoregressive' or 'bert', got {h.objective!r}")
        if not 0.0 < h.mask_fraction < 1.0:
            raise ConfigError(f"model.mask_fraction must be in (0, 1), got {h.mask_fraction}")
        if h.classifier_weight < 0 or h.generative_weight < 0 or h.classifier_weight + h.generative_weight == 0:
            raise ConfigError(
                f"model.classifier_weight ({h.classifier_weight}) and model.generative_weight ({h.generative_weight}) "
                "must be >= 0 and not both 0"
            )
        if h.classifier_weight > 0 and h.num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2 for a classifier, got {h.num_classes}")
        check_palette_settings(h.palette, h.palette_size, h.channels)
        tokens = h.image_size**2
        if h.n_positions is not None and h.n_positions < tokens:
            raise ConfigError(
                f"data.image_size {h.image_size} makes {tokens} tokens per image, more than model.n_positions="
                f"{h.n_positions}; raise n_positions or lower the image size"
            )

    def _config(self) -> IGPTConfig:
        h = self.hparams
        layers, width, heads = IGPT_PRESETS[h.preset]
        try:
            return IGPTConfig(
                vocab_size=h.palette_size,
                n_positions=h.n_positions or h.image_size**2,
                n_layer=h.n_layer or layers,
                n_embd=h.n_embd or width,
                n_head=h.n_head or heads,
                dropout=h.dropout,
                causal=h.objective == "autoregressive",
                **OPENAI_ARCHITECTURE[h.architecture],
            )
        except ValueError as error:
            raise ConfigError(f"model: {error}") from None

    @classmethod
    def from_transformers(cls, path_or_hub_name: str, **overrides: Any) -> PixelPretrainer:
        """A PixelPretrainer shaped like OpenAI's model in a transformers folder (or hub name), with its
        weights and palette; ``overrides`` are further init arguments (classifier_weight, optimizer, ...)."""
        from vitlight.models.igpt_transformers import config_from_json, resolve_folder

        folder = resolve_folder(path_or_hub_name)
        cfg = config_from_json(json.loads((folder / "config.json").read_text()))
        shape = dict(
            n_layer=cfg.n_layer,
            n_embd=cfg.n_embd,
            n_head=cfg.n_head,
            n_positions=cfg.n_positions,
            palette_size=cfg.vocab_size,
            image_size=math.isqrt(cfg.n_positions),
            architecture="openai",
            checkpoint_path=str(path_or_hub_name),
        )
        return cls(**{**shape, **overrides})

    def _load_pretrained(self, path: str) -> None:
        load_pixel_weights(self, path)

    # ----- palette and pixels ------------------------------------------------------------
    def set_palette(self, palette: Palette) -> None:
        if palette.size != self.hparams.palette_size:
            raise CheckpointError(
                f"palette has {palette.size} entries but the model's vocabulary is {self.hparams.palette_size}"
            )
        self.palette = palette
        self.tokenizer = Tokenizer(palette)

    def attach_data(self, datamodule: Any, check_palette: bool | None = None) -> None:
        """Takes the data's palette: fits (or reads the cached) palette when the
        model has none yet, otherwise refuses data whose palette differs (``check_palette``)."""
        tokens = datamodule.image_size**2
        if tokens > self.model.cfg.n_positions:
            raise ConfigError(
                f"data image_size {datamodule.image_size} makes {tokens} tokens per image, more than the model's "
                f"{self.model.cfg.n_positions} positions ({self.model.cfg.n_positions**0.5:g} px square); use "
                "data.image_size "
                f"<= {int(self.model.cfg.n_positions**0.5)}"
            )
        h = self.hparams
        check = h.palette_check if check_palette is None else check_palette
        if self.palette is not None and self.palette.channels != datamodule.channels:
            raise CheckpointError(
                f"palette mismatch: the model's palette has {self.palette.channels} channel(s) but the data has "
                f"{datamodule.channels}; set data.channels: {self.palette.channels}"
            )
        if self.palette is not None and (not check or self.palette.kind == OPENAI_PALETTE_KIND):
            return  # OpenAI's palette was fitted on ImageNet: no data gives it back, nothing to check
        theirs = data_palette(datamodule, h.palette, h.palette_size, h.palette_seed, h.palette_images, h.palette_pixels)
        if self.palette is None:
            self.set_palette(theirs)
        elif theirs.fingerprint() != self.palette.fingerprint():
            raise CheckpointError(
                f"palette mismatch: the model was trained with palette {self.palette.fingerprint()} but "
                f"{type(datamodule).__name__} (image_size {datamodule.image_size}) gives palette "
                f"{theirs.fingerprint()}; "
                "use the data it was trained on, or quantize with the model's palette anyway (--palette checkpoint / "
                "model.palette_check: false)"
            )

    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            raise ConfigError("PixelPretrainer needs a vitlight data module (it fits the palette on its pixels)")
        self.attach_data(datamodule)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """The data module's flips and crops while training, on the uint8 pixels (no normalization)."""
        return augmented_uint8_batch(self.trainer, batch)

    def tokenize(self, images: Tensor) -> Tensor:
        """uint8 images (B, C, H, W) -> palette tokens (B, H*W)."""
        if self.tokenizer is None:
            raise RuntimeError("the model has no palette yet; attach_data(datamodule) fits or loads one")
        return self.tokenizer(channels_last(images))

    # ----- losses ----------------------------------------------------------------------
    def mask(self, tokens: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """BERT masking: (inputs with [MASK] at the chosen positions, boolean mask (B, L)).

        Each position is masked independently with probability mask_fraction; a batch with no
        masked position gets one, so the loss is always defined.
        """
        if generator is None:
            draw = torch.rand(tokens.shape, device=tokens.device)
        else:  # evaluation: the same masks every time, drawn on the CPU generator given
            draw = torch.rand(tokens.shape, generator=generator).to(tokens.device)
        masked = draw < self.hparams.mask_fraction
        masked[0, 0] |= ~masked.any()  # a tensor operation: asking `if not masked.any()` would wait for the device
        inputs = tokens.masked_fill(masked, self.model.mask_token_id)
        return inputs, masked

    def _hidden(self, inputs: Tensor) -> Tensor:
        """Final features (B, L, n_embd) after ln_f, the LM head's input."""
        last = self.model.n_layer - 1
        return self.model.ln_f(self.model.features(inputs, [last])[last])

    def losses(self, tokens: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
        """(generative loss in nats per scored token, tokens scored, average-pooled final features or None)."""
        if self.model.cfg.causal:
            inputs, scored = tokens, None
        else:
            inputs, scored = self.mask(tokens, generator)
        hidden = self._hidden(inputs)  # (B, L, C)
        logits = self.model.head(hidden)  # (B, L, V)
        if scored is None:
            nll = F.cross_entropy(logits.flatten(0, 1), tokens.flatten())
            count = tokens.new_full((), tokens.numel())
        else:
            # every position's loss, weighted by the mask: `logits[scored]` would wait for the device
            per_token = F.cross_entropy(logits.flatten(0, 1), tokens.flatten(), reduction="none").view_as(tokens)
            count = scored.sum()
            nll = (per_token * scored).sum() / count
        pooled = hidden.mean(dim=1) if self.classifier is not None else None
        return nll, count, pooled

    def _step(self, batch: tuple[Tensor, Tensor], stage: str, batch_index: int) -> Tensor:
        images, labels = batch
        tokens = self.tokenize(images)
        generator = None
        if stage != "train" and not self.model.cfg.causal:
            generator = torch.Generator().manual_seed(batch_index + 1)  # the same masks every evaluation
        nll, count, pooled = self.losses(tokens, generator)
        h = self.hparams
        loss = h.generative_weight * nll if h.generative_weight > 0 else nll.new_zeros(())
        if self.classifier is not None:
            if stage != "train" and not self.model.cfg.causal:
                pooled = self._hidden(tokens).mean(dim=1)  # classify unmasked images
            logits = self.classifier(pooled)
            cls_loss = F.cross_entropy(logits, labels)
            loss = loss + h.classifier_weight * cls_loss
            accuracy = self.accuracy[f"{stage}_acc"]
            accuracy.update(logits.detach(), labels)
            self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=stage != "test")
            self.log(
                f"{stage}/cls_loss",
                cls_loss.detach(),
                on_step=stage == "train",
                on_epoch=stage != "train",
                batch_size=len(labels),
            )
            self.log(
                f"{stage}/gen_loss",
                nll.detach(),
                on_step=stage == "train",
                on_epoch=stage != "train",
                batch_size=len(labels),
            )
        if stage == "train":
            self.log("train/loss", loss, prog_bar=True)
            self.log("train/nats_per_token", nll.detach())
            self.log("train/bits_per_token", bits_per_token(nll.detach()))
        else:
            self.mean_loss[stage].update(loss.detach(), weight=len(labels))
            self.mean_nll[stage].update(nll.detach(), weight=count)
            self.log(f"{stage}/loss", self.mean_loss[stage], on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch: tuple[Tensor, Tensor], batch_index: int) -> Tensor:
        return self._step(batch, "train", batch_index)

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_index: int) -> None:
        self._step(batch, "val", batch_index)

    def test_step(self, batch: tuple[Tensor, Tensor], batch_index: int) -> None:
        self._step(batch, "test", batch_index)

    def _log_generative_loss(self, stage: str) -> None:
        metric = self.mean_nll[stage]
        if metric.update_count:
            nats = metric.compute()
            self.log(f"{stage}/nats_per_token", nats)
            self.log(f"{stage}/bits_per_token", bits_per_token(nats), prog_bar=stage == "val")
        metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_generative_loss("val")

    def on_test_epoch_end(self) -> None:
        self._log_generative_loss("test")

    def predict_step(self, batch: tuple[Tensor, Tensor], batch_index: int) -> Tensor:
        """Bits per token of each image (B,) (autoregressive; BERT: of its masked positions)."""
        tokens = self.tokenize(batch[0])
        inputs, scored = (
            (tokens, torch.ones_like(tokens, dtype=torch.bool)) if self.model.cfg.causal else self.mask(tokens)
        )
        nll = F.cross_entropy(self.model(inputs).transpose(1, 2), tokens, reduction="none")  # (B, L)
        return bits_per_token((nll * scored).sum(1) / scored.sum(1).clamp(min=1))

    # ----- completion ----------------------------------------------------------------------
    @torch.no_grad()
    def complete(
        self,
        pixels: Tensor,
        rows: int | None = None,
        samples: int = 1,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Completes images from their top ``rows`` rows (default: half) with the key/value cache.

        pixels: uint8 (B, H, W, C). Returns uint8 (quantized originals (B, H, W, C), top halves
        with a grey bottom (B, H, W, C), completions (B, samples, H, W, C)).
        """
        if not self.model.cfg.causal:
            raise ConfigError(
                "completing images needs an autoregressive iGPT; this checkpoint was trained with objective 'bert'"
            )
        size = self.palette.size
        if top_k is not None and not 1 <= top_k <= size:
            raise ConfigError(f"top_k={top_k} must be between 1 and the palette size {size}")
        if temperature < 0:
            raise ConfigError(f"temperature must be >= 0 (0: always the most likely colour), got {temperature}")
        b, height, width, _ = pixels.shape
        rows = height // 2 if rows is None else rows
        tokens = self.tokenizer(pixels.to(self.device))  # (B, H*W)
        prefix = tokens[:, : rows * width].repeat_interleave(samples, dim=0)  # (B*S, rows*W)
        was_training = self.training
        self.eval()
        out = self.model.generate(prefix, height * width, temperature=temperature, top_k=top_k, generator=generator)
        self.train(was_training)
        originals = self.palette.dequantize(tokens.cpu(), height, width)
        halves = originals.clone()
        halves[:, rows:] = 128
        completions = self.palette.dequantize(out.cpu(), height, width).view(b, samples, height, width, -1)
        return originals, halves, completions

    # ----- checkpoints -------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self.palette is not None:
            checkpoint[PALETTE_KEY] = self.palette.to_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if PALETTE_KEY not in checkpoint:
            raise CheckpointError(
                "the checkpoint holds no ImageGPT palette (igpt_palette); was it written by a PixelPretrainer run?"
            )
        self.set_palette(Palette.from_dict(checkpoint[PALETTE_KEY]))

    # ----- optimisation ---------------------------------------------------------------
    def on_train_start(self) -> None:
        complete_schedules(self.trainer)

    def configure_optimizers(self) -> Any:
        optimizer = build_optimizer(self.optimizer_factory, weight_decay_groups(self))
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer)  # WarmupCosine gets its length in on_train_start
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
