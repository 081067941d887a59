"""One rank of the two-process FSDP runs of tests/test_fsdp_gloo.py: torch's FSDP on CPU over gloo,
through Lightning's Trainer and vitlight.fsdp.BlockFSDP, around a tiny ImageGPT (compiled per block)
and a tiny timm ViT, both built on the meta device, with global-norm clipping and activation
checkpointing on, as in the paper-size experiment files.

    python -m tests.helpers.fsdp_worker OUT_DIR IMAGE_FOLDER   (environment: LOCAL_RANK, WORLD_SIZE, MASTER_*)

Each run writes, under OUT_DIR/<model>/: the full initial state dict (rank 0), each rank's first
batch as the step saw it, and each rank's record (decay groups by name, the clip's global norm,
the losses, whether every weight is finite after the clipped steps). The test recomputes the
norm on the unwrapped model in its own process and compares.
"""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch._dynamo.utils import counters

from vitlight.data import ImageFolder
from vitlight.fsdp import BlockFSDP
from vitlight.tasks import ImageClassifier
from vitlight.tasks.optim import plain_name
from vitlight.tasks.pixel_pretrain import PixelPretrainer

CLIP = 0.05  # far below the first steps' gradient norm, so the clip really scales the gradients
IGPT = dict(preset="igpt-tiny", n_layer=2, n_embd=32, n_head=2, palette="uniform", palette_size=64, image_size=8)
VIT = dict(
    model_name="vit_tiny_patch16_224",
    model_kwargs={"patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2},
    num_classes=3,
    image_size=8,
    lr_scheduler=None,
)


class Record(Callback):
    def __init__(self, out: Path) -> None:
        self.out = out
        self.losses: list[float] = []
        self.norms: list[float] = []
        self.meta_before_wrapping = False

    def setup(self, trainer, pl_module, stage: str) -> None:
        # called before configure_model and before the strategy wraps (and materialises) the model
        self.meta_before_wrapping = any(p.is_meta for p in pl_module.parameters())

    def on_train_start(self, trainer, pl_module) -> None:
        full = trainer.strategy.lightning_module_state_dict()  # a collective: the full state on rank 0
        if trainer.global_rank == 0:
            torch.save(full, self.out / "initial.pt")

    def on_train_batch_start(self, trainer, pl_module, batch, batch_index: int) -> None:
        if trainer.global_step == 0:
            torch.save([t.cpu() for t in batch[:2]], self.out / f"batch{trainer.global_rank}.pt")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_index: int) -> None:
        self.losses.append(float(outputs["loss"]))
        self.norms.append(float(trainer.strategy.precision_plugin.last_norm))

    def on_train_end(self, trainer, pl_module) -> None:
        names = {id(p): plain_name(name) for name, p in pl_module.named_parameters()}
        optimizer = trainer.optimizers[0]
        record = {
            "groups": [sorted(names[id(p)] for p in group["params"]) for group in optimizer.param_groups],
            "weight_decay": [group["weight_decay"] for group in optimizer.param_groups],
            "shard_shapes": {names[id(p)]: list(p.shape) for group in optimizer.param_groups for p in group["params"]},
            "losses": self.losses,
            "norms": self.norms,
            "finite": all(bool(torch.isfinite(p).all()) for p in pl_module.parameters()),
            "meta_before_wrapping": self.meta_before_wrapping,
            "strategy": type(trainer.strategy).__name__,
            "wrapped": type(trainer.strategy.model).__name__,
            "compiled_frames": counters["frames"]["ok"],
        }
        (self.out / f"rank{trainer.global_rank}.json").write_text(json.dumps(record))


def fit(module: L.LightningModule, block: str, images: Path, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    L.seed_everything(0, verbose=False)
    data = ImageFolder(data_dir=str(images), image_size=8, batch_size=4, num_workers=0, val_fraction=0.0)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=BlockFSDP(block_classes=[block], activation_checkpointing=True),
        precision="32-true",
        max_steps=2,
        gradient_clip_val=CLIP,
        gradient_clip_algorithm="norm",
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[Record(out)],
    )
    trainer.fit(module, datamodule=data)


def main(out: Path, images: Path) -> None:
    torch.set_num_threads(1)
    # dynamo captures the same code whatever the backend; inductor's C++ build would take minutes here
    torch.compile = functools.partial(torch.compile, backend="aot_eager")
    fit(
        PixelPretrainer(**IGPT, empty_init=True, compile=True), "vitlight.models.igpt_model.Block", images, out / "igpt"
    )
    fit(ImageClassifier(**VIT, empty_init=True), "timm.models.vision_transformer.Block", images, out / "vit")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
