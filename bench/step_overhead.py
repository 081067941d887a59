"""Training-step overhead: vitlight's ImageClassifier under Lightning vs a plain PyTorch loop.

Both sides train the same weights (a deepcopy of one backbone) on the same in-memory
TensorDataset through the same DataLoader, with AdamW on the same parameter groups
(`weight_decay_groups`) and plain cross-entropy. The vitlight side is a real
`Trainer.fit` of `ImageClassifier` (its metrics, logging, throughput timer and
WarmupCosine schedule included); the plain side is forward, loss, backward, step.
A step is the time between the starts of consecutive batches, so data fetching, hooks
and the scheduler count. The two sides alternate (A, B, B, A, A, B, ...) for --rounds
rounds; each side's figure is the median of all its timed steps (the first --warmup steps
of every run are not timed). Wall-clock time decides RATIO unless --clock cpu; the
process CPU time is printed beside it either way: on a shared machine other processes
inflate wall time far more than CPU time (use --threads 1 there: waiting OpenMP threads
spin and inflate CPU time too).

    python bench/step_overhead.py                        # ViT-Ti/4 and ResNet-18 (CIFAR stem), 32x32, batch 64
    python bench/step_overhead.py --models vit_ti4 --steps 3 --rounds 1 --batch 8
    python bench/step_overhead.py --threads 1 --clock cpu    # on a busy shared machine

The last line is ``RATIO <vitlight step time / plain step time of the worst model>``.
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

try:
    import vitlight  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import lightning as L
from lightning.pytorch.callbacks import Callback

from vitlight.tasks.classification import ImageClassifier
from vitlight.tasks.optim import weight_decay_groups

IMAGE_SIZE, NUM_CLASSES = 32, 10
MODELS = {
    "vit_ti4": dict(model_name="vit_tiny_patch16_224", model_kwargs={"patch_size": 4}),
    "resnet18": dict(model_name="resnet18", cifar_stem=True),
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="vit_ti4,resnet18", help=f"comma-separated, from {', '.join(MODELS)}")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=2, help="timed steps per side per round")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps at the start of every run")
    p.add_argument("--rounds", type=int, default=4, help="alternations of the two sides")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's own)")
    p.add_argument("--clock", default="wall", choices=("wall", "cpu"), help="the time RATIO compares")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.models = [name.strip() for name in args.models.split(",") if name.strip()]
    unknown = [name for name in args.models if name not in MODELS]
    if unknown or not args.models:
        p.error(f"--models {','.join(unknown) or '(none)'}: choose from {', '.join(MODELS)}")
    if min(args.batch, args.steps, args.rounds) < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        p.error("--batch, --steps, --rounds and --threads must be at least 1 and --warmup at least 0")
    return args


Stamp = tuple[float, float]  # (wall seconds, process CPU seconds)


def _stamp() -> Stamp:
    return time.perf_counter(), time.process_time()


class StepTimer(Callback):
    """A stamp at the start of every training batch."""

    def __init__(self) -> None:
        self.stamps: list[Stamp] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.stamps.append(_stamp())


def _timed_steps(stamps: list[Stamp], warmup: int, steps: int) -> list[Stamp]:
    """(wall, cpu) durations of steps warmup .. warmup+steps-1 (each ends where the next batch starts)."""
    stamps = stamps[warmup:warmup + steps + 1]
    return [(after[0] - before[0], after[1] - before[1]) for before, after in zip(stamps, stamps[1:])]


def run_vitlight(module: ImageClassifier, loader: DataLoader, batches: int, warmup: int, steps: int) -> list[Stamp]:
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=batches, max_epochs=1, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=loader)
    return _timed_steps(timer.stamps, warmup, steps)


def run_plain(model: torch.nn.Module, loader: DataLoader, batches: int, warmup: int, steps: int) -> list[Stamp]:
    optimizer = torch.optim.AdamW(weight_decay_groups(model))  # ImageClassifier's default optimizer
    model.train()
    stamps = []
    for index, (images, labels) in enumerate(loader):
        stamps.append(_stamp())
        if index == batches - 1:  # the last step's end; Lightning runs this batch too, but it is not timed
            break
        loss = F.cross_entropy(model(images), labels, label_smoothing=0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return _timed_steps(stamps, warmup, steps)


def bench_model(name: str, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    """{side: (median wall seconds, median CPU seconds) per step} of one model."""
    torch.manual_seed(args.seed)
    module = ImageClassifier(num_classes=NUM_CLASSES, image_size=IMAGE_SIZE, label_smoothing=0.0, **MODELS[name])
    plain = copy.deepcopy(module.backbone)
    batches = args.warmup + args.steps + 1  # the last step ends where one more batch starts
    generator = torch.Generator().manual_seed(args.seed)
    data = TensorDataset(
        torch.randn(batches * args.batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        torch.randint(0, NUM_CLASSES, (batches * args.batch,), generator=generator),
    )
    loader = DataLoader(data, batch_size=args.batch, shuffle=False, num_workers=0, drop_last=True)
    times: dict[str, list[Stamp]] = {"vitlight": [], "plain": []}
    for round_index in range(args.rounds):
        # A B, B A, A B, ...: neither side always runs right after the other's warm caches
        order = ("vitlight", "plain") if round_index % 2 == 0 else ("plain", "vitlight")
        for side in order:
            if side == "vitlight":
                times[side] += run_vitlight(module, loader, batches, args.warmup, args.steps)
            else:
                times[side] += run_plain(plain, loader, batches, args.warmup, args.steps)
    return {
        side: (statistics.median(t[0] for t in steps), statistics.median(t[1] for t in steps))
        for side, steps in times.items()
    }


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")  # Lightning's advice about workers and small datasets
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    print(
        f"threads={torch.get_num_threads()} batch={args.batch} steps={args.steps} warmup={args.warmup} "
        f"rounds={args.rounds} clock={args.clock} torch={torch.__version__} lightning={L.__version__}",
        flush=True,
    )
    ratios = {}
    for name in args.models:
        started = time.perf_counter()
        result = bench_model(name, args)
        for side, (wall, cpu) in result.items():
            print(
                f"{name:<9} {side:<8} {wall * 1000:9.1f} ms/step {1 / wall:8.3f} steps/s {args.batch / wall:9.1f} images/s"
                f" {cpu * 1000:9.1f} cpu-ms/step",
                flush=True,
            )
        wall_ratio = result["vitlight"][0] / result["plain"][0]
        cpu_ratio = result["vitlight"][1] / result["plain"][1]
        ratios[name] = cpu_ratio if args.clock == "cpu" else wall_ratio
        print(f"{name:<9} ratio wall {wall_ratio:.4f} cpu {cpu_ratio:.4f} ({time.perf_counter() - started:.0f} s)", flush=True)
    worst = max(ratios, key=ratios.get)
    print(f"worst model: {worst}")
    print(f"RATIO {ratios[worst]:.4f}")


if __name__ == "__main__":
    main()
