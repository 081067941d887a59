"""Measuring vitlight's training step as `vitlight fit` runs it: a Lightning Trainer over the
experiment's own LightningModule, fed by synthetic uint8 batches or by the experiment's own
data module; plus the two ceilings MFU is taken against and the loader's own rate.

The one place that depends on the data contract of issue 12 (loaders hand over uint8 images,
the module finishes them on the device in `on_after_batch_transfer`) is `hands_over_uint8`:
until a module overrides that hook, synthetic batches are handed over as normalised floats, as
the data modules then did.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, Dataset

from vitlight.syncs import HostSyncCounter

# Datasheet dense bf16 tensor-core peaks (FLOP/s, no sparsity), matched on torch's device name.
DATASHEET_BF16 = (
    (r"\bH200\b", 989e12),
    (r"\bGH200\b", 989e12),
    (r"\bH100\b.*\bPCIe\b", 756e12),
    (r"\bH100\b.*\bNVL\b", 835e12),
    (r"\bH100\b", 989e12),  # SXM
    (r"\bA100\b", 312e12),
    (r"\bL40S\b", 362e12),
    (r"\bL4\b", 121e12),
    (r"\bA10\b", 125e12),
)
# Trainer settings of the experiment that change the step's work; loggers, checkpoints and the
# progress bar are left out (bench/step_overhead.py times the whole shipped stack on a CPU).
STEP_SETTINGS = ("gradient_clip_val", "gradient_clip_algorithm", "accumulate_grad_batches")


def datasheet_peak(device_name: str | None) -> float | None:
    """Dense bf16 FLOP/s of the chip's datasheet, or None for a chip not in DATASHEET_BF16."""
    for pattern, peak in DATASHEET_BF16:
        if device_name and re.search(pattern, device_name):
            return peak
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(device: torch.device, size: int, rounds: int = 3, reps: int = 10) -> float:
    """FLOP/s of size-cube bf16 products on random data: the median of `rounds` rounds of `reps`."""
    a, b = (torch.randn(size, size, device=device, dtype=torch.bfloat16) for _ in range(2))
    out = torch.empty_like(a)
    for _ in range(3):
        torch.mm(a, b, out=out)
    rates = []
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=out)
        sync(device)
        rates.append(2 * size**3 * reps / (time.perf_counter() - start))
    return sorted(rates)[len(rates) // 2]


# ----- the data contract ---------------------------------------------------------------------------
def hands_over_uint8(module: L.LightningModule) -> bool:
    """Whether the module finishes uint8 batches on the device (issue 12's contract)."""
    return type(module).on_after_batch_transfer is not L.LightningModule.on_after_batch_transfer


class _Batches(Dataset):
    """`count` whole batches cycled from a pool made once (the loader does no per-image work)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch: int, count: int) -> None:
        self.images, self.labels, self.batch, self.count = images, labels, batch, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = (index * self.batch) % (len(self.images) - self.batch + 1)
        return self.images[start : start + self.batch], self.labels[start : start + self.batch]


class SyntheticImages(L.LightningDataModule):
    """Random images of the experiment data's shape, classes and normalisation, for any module.

    Mirrors the attributes a vitlight module reads from its data (num_classes, image_size,
    channels, transform_settings, device_finish); hands over uint8 (B, C, S, S) and int64 labels, or
    normalised float32 where the module does not finish uint8 batches (`hands_over_uint8`)."""

    def __init__(self, like: Any, batch_size: int, batches: int, uint8: bool, pin_memory: bool = False) -> None:
        super().__init__()
        self.num_classes, self.image_size, self.channels = like.num_classes, like.image_size, like.channels
        self.transform_settings = getattr(like, "transform_settings", None)
        self.batch_size, self.batches, self.uint8, self.pin_memory = batch_size, batches, uint8, pin_memory
        self.classes = [str(i) for i in range(self.num_classes)]
        if hasattr(
            like, "device_finish"
        ):  # the contract: the module asks its data module how to finish uint8 on the device
            self.device_finish = like.device_finish

    def _pool(self) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(0)
        count = 4 * self.batch_size
        images = torch.randint(
            0, 256, (count, self.channels, self.image_size, self.image_size), dtype=torch.uint8, generator=generator
        )
        labels = torch.randint(0, self.num_classes, (count,), generator=generator)
        if not self.uint8:  # before the contract: the loader normalised on the CPU
            settings = self.transform_settings
            mean = torch.tensor(settings.mean if settings else (0.5,) * self.channels).view(1, -1, 1, 1)
            std = torch.tensor(settings.std if settings else (0.5,) * self.channels).view(1, -1, 1, 1)
            images = (images.float() / 255 - mean) / std
        return images, labels

    def train_dataloader(self) -> DataLoader:
        images, labels = self._pool()
        return DataLoader(
            _Batches(images, labels, self.batch_size, self.batches),
            batch_size=None,
            shuffle=False,
            num_workers=0,
            pin_memory=self.pin_memory,
        )


def prepare_synthetic(module: L.LightningModule) -> None:
    """A module that fits its palette on its data (PixelPretrainer) gets a random one of the same
    size instead: k-means over random pixels costs time and changes nothing about the step."""
    if not hasattr(module, "set_palette") or getattr(module, "palette", None) is not None:
        return
    from vitlight.models.palette import Palette

    size, channels = module.hparams.palette_size, module.hparams.channels
    generator = torch.Generator().manual_seed(0)
    module.set_palette(Palette(torch.rand(size, channels, generator=generator) * 255, kind="custom"))
    module.hparams.palette_check = False


# ----- the step ------------------------------------------------------------------------------------
def flops_per_step(module: L.LightningModule, batch: int) -> int | None:
    """Forward + loss + backward FLOPs of one step, counted on the meta device (None: unknown module)."""
    from vitlight.analysis.flops import count_training_flops

    h = module.hparams
    if hasattr(module, "backbone"):
        return count_training_flops(module.backbone, (batch, h.channels, h.image_size, h.image_size)).train_step
    if hasattr(module, "tokenize") and hasattr(module, "model"):
        return count_training_flops(module.model, (batch, h.image_size**2), dtype=torch.long).train_step
    return None


def flop_convention(module: L.LightningModule) -> tuple[str, float | None]:
    """How `flops_per_step` counts, and for causal attention the share of it spent on the masked half.

    vitlight counts every FLOP of the matmuls as run, so the masked half of causal attention's
    scores and weighted values counts too (nanoGPT's 6N + 12 L T d convention also counts it);
    MFU over only the work that matters is (1 - share) x the reported one."""
    model = getattr(module, "model", None)
    config = getattr(model, "cfg", None)
    if config is None or not getattr(config, "causal", False):
        return "all matmul FLOPs as run (no attention mask)", None
    tokens, width, layers = module.hparams.image_size**2, config.n_embd, config.n_layer
    # per token and layer, forward: 2 x 12 d^2 for the weights (qkv, projection, MLP at ratio 4 scale with
    # mlp_ratio), 2 x 2 T d for scores and weighted values, half of which the causal mask throws away
    weights = 2 * (4 + 2 * config.mlp_ratio) * width**2
    attention = 4 * tokens * width
    head = 2 * width * config.vocab_size / layers
    share = (attention / 2) / (weights + attention + head)
    return "all matmul FLOPs as run, the masked half of causal attention included (as nanoGPT counts)", share


@dataclass
class StepClock(Callback):
    """Times steps warmup .. warmup+steps-1 (end of the batch before to end of the last, with a device
    synchronize only at those two boundaries), then counts host syncs over `count` more steps."""

    warmup: int
    steps: int
    count: int
    device: torch.device
    seconds: float | None = None
    peak_bytes: int | None = None
    syncs: HostSyncCounter | None = None
    batches: int = 0
    _started: float = 0.0
    _counting: bool = field(default=False, repr=False)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        if self.warmup == 0:
            self._begin()

    def _begin(self) -> None:
        sync(self.device)
        self._started = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.batches += 1
        if self.batches == self.warmup:
            self._begin()
        elif self.batches == self.warmup + self.steps:
            sync(self.device)
            self.seconds = time.perf_counter() - self._started
            if self.device.type == "cuda":
                self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
            if self.count:
                self.syncs = HostSyncCounter(only_from="vitlight")
                self.syncs.__enter__()
                self._counting = True
        elif self._counting and self.batches == self.warmup + self.steps + self.count:
            self._stop_counting()

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._stop_counting()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        self._stop_counting()

    def _stop_counting(self) -> None:
        if self._counting:
            self._counting = False
            self.syncs.__exit__(None, None, None)


def optimizer_steps_for(batches: int, trainer_section: dict) -> int:
    """The Trainer's max_steps counts optimizer steps: with gradient accumulation each takes several batches,
    so `batches` batches need ceil(batches / accumulation) of them (not `batches`, which ran 8x the work)."""
    accumulation = int(trainer_section.get("accumulate_grad_batches") or 1)
    return -(-batches // accumulation)


def trainer_for(
    device: torch.device, precision: str, trainer_section: dict, clock: Callback, batches: int
) -> L.Trainer:
    settings = {key: trainer_section[key] for key in STEP_SETTINGS if trainer_section.get(key) is not None}
    return L.Trainer(
        accelerator=device.type,
        devices=1,
        precision=precision,
        max_steps=optimizer_steps_for(batches, trainer_section),
        max_epochs=-1,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
        **settings,
    )


def measure_fit(
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    trainer_section: dict,
    device: torch.device,
    precision: str,
    warmup: int,
    steps: int,
    count: int,
) -> dict:
    """images/s, seconds per step, peak memory and host syncs per step of `trainer.fit(module, datamodule)`."""
    clock = StepClock(warmup, steps, count, device)
    trainer = trainer_for(device, precision, trainer_section, clock, warmup + steps + count)
    trainer.fit(module, datamodule=datamodule)
    row_batches = {"batches_run": clock.batches, "optimizer_steps": trainer.global_step}
    if clock.seconds is None:
        raise RuntimeError(f"training stopped after {clock.batches} of {warmup + steps} steps")
    # a "step" here is one batch (forward and backward), whatever the gradient accumulation
    row = {"step_ms": clock.seconds / steps * 1e3, "rate": datamodule.batch_size * steps / clock.seconds, **row_batches}
    if clock.peak_bytes is not None:
        row["peak_gib"] = clock.peak_bytes / 2**30
    if clock.syncs is not None:
        row["syncs_per_step"] = clock.syncs.total / count
        row["syncs_by_caller"] = dict(sorted(_by_caller(clock.syncs.events).items()))
    return row


def _by_caller(events: list[tuple[str, str]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for kind, caller in events:
        out[f"{kind} at {caller}"] = out.get(f"{kind} at {caller}", 0) + 1
    return out


def loader_rate(datamodule: Any, batches: int, warmup: int) -> float:
    """images/s of the data module's own train loader alone (no step), after `warmup` batches."""
    loader = datamodule.train_dataloader()
    iterator = iter(loader)

    def next_images() -> torch.Tensor:
        nonlocal iterator
        try:
            return next(iterator)[0]
        except StopIteration:  # a small data set: a new epoch
            iterator = iter(loader)
            return next(iterator)[0]

    for _ in range(warmup):
        next_images()
    started, seen = time.perf_counter(), 0
    for _ in range(batches):
        seen += len(next_images())
    return seen / (time.perf_counter() - started)
