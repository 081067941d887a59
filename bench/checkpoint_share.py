"""The share of training time that step checkpoints take: every 200 optimizer steps (vitlight before)
against every 10 minutes (now), for a model the size of ResNet-50, side by side in one run.

Measures on this machine (CPU): one save of what a step checkpoint holds for timm's resnet50 (25.6M
parameters) trained with AdamW: weights, both AdamW moments and the step counts, written by
vitlight's AtomicCheckpointIO (temporary file, fsync, rename) into `--dir`; and one training step
(forward, backward, AdamW) at `--batch_size` 224 px images on the CPU. A save stops the training thread
in both policies, so the share of the time spent saving is

    every N steps:      save / (N x step + save)
    every T minutes:    save / (60 T + save)          (whenever N x step < 60 T: the clock saves less)

computed for the step measured here and for `--gpu_step_ms` (default 50 ms: ResNet-50 at batch 256
and about 5,000 images/s, bf16 on one H100, the issue's figure), with the save time measured here
(local disk; network storage is slower). Steps are not run 200 times: one step's and one save's
time are measured (median of `--repeats`) and the shares follow from the formulas.

    python bench/checkpoint_share.py
    python bench/checkpoint_share.py --model resnet18 --batch_size 2 --repeats 1     # a smoke run
    python bench/checkpoint_share.py --device cuda --batch_size 256 --out share.json  # the GPU check: a measured step

The last line is ``RATIO <share every 200 steps / share every 10 minutes>`` at the GPU step time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

try:
    import vitlight  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vitlight.reliability import AtomicCheckpointIO


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet50", help="timm model name (default resnet50, 25.6M parameters)")
    p.add_argument("--batch_size", type=int, default=8, help="images per timed CPU step")
    p.add_argument("--repeats", type=int, default=3, help="saves and steps timed (the median counts)")
    p.add_argument("--steps", type=int, default=200, help="the step policy: a checkpoint every N optimizer steps")
    p.add_argument("--minutes", type=float, default=10.0, help="the clock policy: a checkpoint every T minutes")
    p.add_argument("--gpu_step_ms", type=float, default=50.0, help="a GPU's step time to compute the shares for")
    p.add_argument("--dir", default=None, help="where the checkpoints go (default: a temporary folder in .)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the timed step runs (cuda: bf16)")
    p.add_argument("--out", default=None, help="JSON file for the figures")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here; use --device cpu")
    return args


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(
    model_name: str, batch_size: int, repeats: int, folder: Path, device: torch.device | None = None
) -> dict[str, float]:
    """{"parameters", "checkpoint_bytes", "save_s", "step_s"} for `model_name` with AdamW on `device`
    (on CUDA: bf16 autocast, channels_last, fused AdamW, as vitlight trains a CNN there)."""
    import timm

    device = device or torch.device("cpu")
    cuda = device.type == "cuda"
    model = timm.create_model(model_name, num_classes=1000).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05, fused=cuda or None)
    images = torch.randn(batch_size, 3, 224, 224, device=device)
    labels = torch.randint(0, 1000, (batch_size,), device=device)

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = torch.nn.functional.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        _sync(device)

    step()  # warm-up; creates the AdamW moments that a checkpoint holds
    step()  # (cuDNN's and the allocator's first-call work)
    step_times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        step_times.append(time.perf_counter() - start)
    io, path, save_times = AtomicCheckpointIO(), folder / "last.ckpt", []
    for index in range(repeats):
        checkpoint = {"state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()], "step": index}
        start = time.perf_counter()
        io.save_checkpoint(checkpoint, path)  # on CUDA this includes the copy of every tensor to the host
        save_times.append(time.perf_counter() - start)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "checkpoint_bytes": path.stat().st_size,
        "save_s": statistics.median(save_times),
        "step_s": statistics.median(step_times),
    }


def share_every_steps(save_s: float, step_s: float, steps: int) -> float:
    return save_s / (steps * step_s + save_s)


def share_every_minutes(save_s: float, step_s: float, minutes: float) -> float:
    """The clock saves at the first optimizer step after the interval: at least one step apart."""
    return save_s / (max(60.0 * minutes, step_s) + save_s)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory(dir=args.dir or ".") as scratch:
        figures = measure(args.model, args.batch_size, args.repeats, Path(scratch), device)
    save_s, measured_step = figures["save_s"], figures["step_s"]
    where = "GPU (bf16)" if device.type == "cuda" else "CPU"
    print(
        f"{args.model}: {figures['parameters'] / 1e6:.1f}M parameters, "
        f"checkpoint {figures['checkpoint_bytes'] / 1e9:.2f} "
        f"GB, one save (fsync'd) {save_s:.2f} s, one {where} step at batch {args.batch_size} {measured_step:.3f} s"
    )
    print(f"{'step time':<26} {f'every {args.steps} steps':>16} {f'every {args.minutes:g} min':>14} {'ratio':>7}")
    rows = [(f"this {where} ({measured_step:.3f} s)", measured_step)]
    if device.type == "cpu":  # no GPU step measured: the figure for one
        rows.append((f"a GPU ({args.gpu_step_ms:g} ms)", args.gpu_step_ms / 1e3))
    ratio, shares = 0.0, []
    for label, step_s in rows:
        by_steps = share_every_steps(save_s, step_s, args.steps)
        by_clock = share_every_minutes(save_s, step_s, args.minutes)
        ratio = by_steps / by_clock
        shares.append({"step": label, "step_s": step_s, "share_every_steps": by_steps, "share_every_minutes": by_clock})
        print(f"{label:<26} {by_steps:>16.2%} {by_clock:>14.3%} {ratio:>7.1f}")
    if args.out:
        record = {"model": args.model, "device": args.device, "batch_size": args.batch_size, **figures}
        record.update(steps=args.steps, minutes=args.minutes, shares=shares)
        Path(args.out).write_text(json.dumps(record, indent=1) + "\n")
    print(f"RATIO {ratio:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
