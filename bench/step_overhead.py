"""Training-step overhead: the stack `vitlight fit` ships against a plain PyTorch loop doing the same work.

The vitlight side is a real `vitlight fit` (VitlightCLI, in this process) of an ImageClassifier
config that includes the shipped `experiments/_trainer.yaml`: the offline W&B logger, the
progress bar, the checkpoint and LR-monitor callbacks of `_callbacks.yaml`, vitlight's own
callbacks (best-validation record, config in checkpoints, NonFiniteLossGuard, RandomStates,
PreemptionCheckpoint, StepCheckpoint), the atomic checkpoint IO, gradient clipping, the
module's metrics, logging and throughput timer, and the WarmupCosine schedule. Only the test
run after fit is left out. The plain side trains the same backbone architecture on the same
data module's train loader with AdamW over the same parameter groups, label-smoothed
cross-entropy, gradient-norm clipping and a per-step LR schedule: forward, loss, backward,
clip, step. Where the loader hands over uint8 batches (issue 12's contract), the plain side
converts and normalises them itself (`finish_batch`), as vitlight's module does on the device.

A step is the time between the starts of consecutive batches, so data fetching, hooks, logging
and callbacks count. The two sides alternate (A B, B A, ...) for --rounds rounds; each side's
figure is the median of all its timed steps (the first --warmup steps of every run are not
timed). Wall-clock time decides RATIO unless --clock cpu; the process CPU time is printed beside
it either way (on a shared machine use --threads 1: waiting OpenMP threads spin).

    python bench/step_overhead.py --threads 1            # ViT-Ti/4 and ResNet-18 (CIFAR stem), 32x32, batch 64
    python bench/step_overhead.py --models vit_ti4 --steps 3 --rounds 1 --batch 8

The last line is ``RATIO <vitlight step time / plain step time of the worst model>``; goal <= 1.05.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))

import lightning as L  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402

from vitlight.cli import VitlightCLI  # noqa: E402
from vitlight.data.base import ImageDataModule, SplitData  # noqa: E402
from vitlight.tasks.backbones import apply_cifar_stem, create_backbone  # noqa: E402
from vitlight.tasks.optim import weight_decay_groups  # noqa: E402

IMAGE_SIZE, NUM_CLASSES = 32, 10
LR, WEIGHT_DECAY, LABEL_SMOOTHING, CLIP = 1e-3, 0.05, 0.1, 1.0  # both sides; the clip is _trainer.yaml's
MODELS = {
    "vit_ti4": dict(model_name="vit_tiny_patch16_224", model_kwargs={"patch_size": 4}),
    "resnet18": dict(model_name="resnet18", cifar_stem=True),
}


class RandomImages(ImageDataModule):
    """Random uint8 images in memory through vitlight's own data path (SplitDataset, its loader)."""

    has_val_split = True

    def __init__(
        self,
        train_images: int = 640,
        batch_size: int = 64,
        image_size: int = IMAGE_SIZE,
        num_workers: int = 0,
        seed: int = 0,
    ) -> None:
        super().__init__(
            image_size=image_size, batch_size=batch_size, num_workers=num_workers, val_fraction=0.0, seed=seed
        )
        self.train_images = train_images

    @property
    def classes(self) -> list[str]:
        return [str(i) for i in range(NUM_CLASSES)]

    def load_split(self, split: str) -> SplitData:
        count = self.train_images if split == "train" else self.batch_size
        generator = np.random.default_rng([self.seed, ("train", "val", "test").index(split)])
        images = generator.integers(0, 256, (count, self.image_size, self.image_size, 3), dtype=np.uint8)
        return SplitData(labels=generator.integers(0, NUM_CLASSES, count), images=images, origin=f"random {split}")


Stamp = tuple[float, float]  # (wall seconds, process CPU seconds)


def _stamp() -> Stamp:
    return time.perf_counter(), time.process_time()


class StepTimer(Callback):
    """A stamp at the start of every training batch."""

    def __init__(self) -> None:
        self.stamps: list[Stamp] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.stamps.append(_stamp())


class TimedCLI(VitlightCLI):
    """`vitlight fit` as shipped, with a step timer added and without the test run after fit."""

    timer: StepTimer

    def instantiate_trainer(self, **kwargs) -> L.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.append(self.timer)
        return trainer

    def after_fit(self) -> None:
        pass


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="vit_ti4,resnet18", help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=4, help="timed steps per side per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of every run")
    p.add_argument("--rounds", type=int, default=4, help="alternations of the two sides")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--clock", default="wall", choices=("wall", "cpu"), help="the time RATIO compares")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in args.models if name not in MODELS]
    if unknown or not args.models:
        p.error(f"--models {','.join(unknown) or '(none)'}: choose from {', '.join(MODELS)}")
    if (
        min(args.batch, args.steps, args.rounds) < 1
        or args.warmup < 0
        or (args.threads is not None and args.threads < 1)
    ):
        p.error("--batch, --steps, --rounds and --threads must be at least 1 and --warmup at least 0")
    return args


def _timed_steps(stamps: list[Stamp], warmup: int, steps: int) -> list[Stamp]:
    """(wall, cpu) durations of steps warmup .. warmup+steps-1 (each ends where the next batch starts)."""
    stamps = stamps[warmup : warmup + steps + 1]
    return [(after[0] - before[0], after[1] - before[1]) for before, after in zip(stamps, stamps[1:])]


def write_config(name: str, args: argparse.Namespace, folder: Path) -> Path:
    """An experiment YAML that includes the shipped _trainer.yaml (logger, callbacks, clipping)."""
    batches = args.warmup + args.steps + 1  # the last step ends where one more batch starts
    config = {
        "trainer": str(ROOT / "experiments" / "_trainer.yaml"),
        "model": {
            "class_path": "vitlight.tasks.ImageClassifier",
            "init_args": {
                **MODELS[name],
                "label_smoothing": LABEL_SMOOTHING,
                "optimizer": {"class_path": "torch.optim.AdamW", "init_args": {"lr": LR, "weight_decay": WEIGHT_DECAY}},
                "lr_scheduler": {
                    "class_path": "vitlight.tasks.schedules.WarmupCosine",
                    "init_args": {"warmup_fraction": 0.1},
                },
            },
        },
        "data": {
            "class_path": f"{RandomImages.__module__}.RandomImages",
            "init_args": {"train_images": batches * args.batch, "batch_size": args.batch, "seed": args.seed},
        },
    }
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_vitlight(config: Path, runs: Path, args: argparse.Namespace) -> list[Stamp]:
    TimedCLI.timer = timer = StepTimer()
    batches = args.warmup + args.steps + 1
    with contextlib.redirect_stdout(sys.stderr):  # the progress bar and model summary: stdout keeps the figures
        TimedCLI(
            args=[
                "fit",
                "--config",
                str(config),
                "--runs_dir",
                str(runs),
                "--seed_everything",
                str(args.seed),
                "--trainer.max_epochs",
                "1",
                "--trainer.max_steps",
                str(batches),
            ]
        )
    return _timed_steps(timer.stamps, args.warmup, args.steps)


def finish_batch(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, S, S) -> normalised float32; float batches (normalised by the loader) pass through."""
    if images.dtype != torch.uint8:
        return images
    return (images.float() / 255 - mean) / std


def run_plain(name: str, args: argparse.Namespace) -> list[Stamp]:
    torch.manual_seed(args.seed)
    spec = MODELS[name]
    model = create_backbone(spec["model_name"], NUM_CLASSES, IMAGE_SIZE, 3, spec.get("model_kwargs"))
    if spec.get("cifar_stem"):
        apply_cifar_stem(model, 3)
    batches = args.warmup + args.steps + 1
    data = RandomImages(train_images=batches * args.batch, batch_size=args.batch, seed=args.seed)
    data.setup("fit")
    mean = torch.tensor(data.transform_settings.mean).view(1, -1, 1, 1)
    std = torch.tensor(data.transform_settings.std).view(1, -1, 1, 1)
    optimizer = torch.optim.AdamW(weight_decay_groups(model), lr=LR, weight_decay=WEIGHT_DECAY)
    warm = max(1, round(0.1 * batches))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: (s + 1) / warm if s < warm else 0.5 * (1 + math.cos(math.pi * (s - warm) / max(1, batches - warm))),
    )
    model.train()
    stamps = []
    for index, (images, labels) in enumerate(data.train_dataloader()):
        stamps.append(_stamp())
        if index == batches - 1:  # the last step's end; Lightning runs this batch too, but it is not timed
            break
        loss = F.cross_entropy(model(finish_batch(images, mean, std)), labels, label_smoothing=LABEL_SMOOTHING)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        schedule.step()
    return _timed_steps(stamps, args.warmup, args.steps)


def bench_model(name: str, args: argparse.Namespace, folder: Path) -> dict[str, tuple[float, float]]:
    """{side: (median wall seconds, median CPU seconds) per step} of one model."""
    config = write_config(name, args, folder)
    times: dict[str, list[Stamp]] = {"vitlight": [], "plain": []}
    for round_index in range(args.rounds):
        # A B, B A, A B, ...: neither side always runs right after the other's warm caches
        order = ("vitlight", "plain") if round_index % 2 == 0 else ("plain", "vitlight")
        for side in order:
            if side == "vitlight":
                times[side] += run_vitlight(config, folder / "runs", args)
            else:
                times[side] += run_plain(name, args)
    return {
        side: (statistics.median(t[0] for t in steps), statistics.median(t[1] for t in steps))
        for side, steps in times.items()
    }


def _quiet() -> None:
    os.environ["WANDB_MODE"] = "offline"  # the shipped logger, never a server
    os.environ.setdefault("WANDB_SILENT", "true")
    warnings.filterwarnings("ignore")  # Lightning's advice about workers and small datasets
    for name in ("lightning", "lightning.pytorch", "lightning.fabric", "vitlight"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    _quiet()
    sys.modules.setdefault(RandomImages.__module__, sys.modules[__name__])  # the config names the data class by module
    print(
        f"threads={torch.get_num_threads()} batch={args.batch} steps={args.steps} warmup={args.warmup} "
        f"rounds={args.rounds} clock={args.clock} torch={torch.__version__} lightning={L.__version__}",
        flush=True,
    )
    ratios = {}
    with tempfile.TemporaryDirectory(prefix="vitlight-step-overhead-") as folder:
        for name in args.models:
            started = time.perf_counter()
            result = bench_model(name, args, Path(folder))
            for side, (wall, cpu) in result.items():
                print(
                    f"{name:<9} {side:<8} {wall * 1000:9.1f} ms/step {1 / wall:8.3f} steps/s {args.batch / wall:9.1f} images/s"
                    f" {cpu * 1000:9.1f} cpu-ms/step",
                    flush=True,
                )
            wall_ratio = result["vitlight"][0] / result["plain"][0]
            cpu_ratio = result["vitlight"][1] / result["plain"][1]
            ratios[name] = cpu_ratio if args.clock == "cpu" else wall_ratio
            print(
                f"{name:<9} ratio wall {wall_ratio:.4f} cpu {cpu_ratio:.4f} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
    worst = max(ratios, key=ratios.get)
    print(f"worst model: {worst}")
    print(f"RATIO {ratios[worst]:.4f}")


if __name__ == "__main__":
    main()
