"""The GPU check's own measurements beside bench/gpu.py, one subcommand each, each printing one JSON line
(and appending it to --out) as soon as it has it, so a check cut short keeps what it measured.

    python bench/gpu_steps.py resnet50            # ResNet-50 as shipped before vs cudnn.benchmark + fused AdamW
    python bench/gpu_steps.py busy                # GPU busy fraction of vit_ti4_cifar10, batch 128 and 512
    python bench/gpu_steps.py attention           # the attention kernel SDPA picks for ViT-B/16 and iGPT-S
    python bench/gpu_steps.py tta --data_dir DIR  # test accuracy every 30 s of a 2-minute CIFAR-10 ViT run
    python bench/gpu_steps.py STEP --device cpu --tiny   # seconds: checks that it works (tests/test_bench_gpu_steps.py)

Models and data come from the experiment YAMLs through bench/gpu_build.py (no jsonargparse on the GPU
machine); steps are timed by bench/gpu_measure.py's Trainer and clock, as bench/gpu.py times them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the bench's modules; vitlight from this checkout

import gpu  # noqa: E402  (its CONFIGS: the experiment files and their tiny shapes)
import gpu_build  # noqa: E402
import gpu_measure  # noqa: E402
import lightning as L  # noqa: E402
import torch  # noqa: E402
from lightning.pytorch.callbacks import Callback  # noqa: E402

EXPERIMENTS = HERE.parent / "experiments"
SMALL_CIFAR = "vit_ti4_cifar10.yaml"
TINY_VIT = {"model.init_args.model_kwargs": {"patch_size": 8, "depth": 2, "embed_dim": 32, "num_heads": 2}}


def emit(args: argparse.Namespace, record: dict) -> None:
    record = {"step": args.step, "device": args.device, "tiny": args.tiny, **record}
    line = json.dumps(record)
    print(line, flush=True)
    if args.out:
        with open(args.out, "a") as out:
            out.write(line + "\n")


def build(experiment: str, overrides: dict) -> gpu_build.Built:
    return gpu_build.build([EXPERIMENTS / experiment], overrides)


def timed_fit(args: argparse.Namespace, experiment: str, overrides: dict, steps: int) -> dict:
    """ms per batch, images/s and peak memory of the experiment's module on synthetic batches."""
    built = build(experiment, overrides)
    module, data = built.module, built.datamodule
    gpu_measure.prepare_synthetic(module)
    warmup = 1 if args.tiny else 5
    accumulation = int(built.trainer.get("accumulate_grad_batches") or 1)
    synthetic = gpu_measure.SyntheticImages(
        data, data.batch_size, warmup + steps + accumulation + 1, uint8=True, pin_memory=args.device == "cuda"
    )
    row = gpu_measure.measure_fit(
        module, synthetic, built.trainer, torch.device(args.device), args.precision, warmup, steps, 0
    )
    return {"batch": data.batch_size, **row}


# ----- ResNet-50: the settings of issue 24 against the ones shipped before it -------------------------------
def resnet50(args: argparse.Namespace) -> None:
    shape = gpu.CONFIGS["resnet50"].tiny if args.tiny else {}
    batch = {"data.init_args.batch_size": 2} if args.tiny else {}
    variants = {
        "as shipped before (no cudnn.benchmark, for-each AdamW)": {
            "model.init_args.cudnn_benchmark": False,
            "model.init_args.optimizer.init_args.fused": False,
        },
        "cudnn.benchmark + fused AdamW (the defaults now)": {},
    }
    for name, overrides in variants.items():
        torch.backends.cudnn.benchmark = False  # each variant decides it afresh
        row = timed_fit(args, "resnet50_imagenet.yaml", {**shape, **batch, **overrides}, 2 if args.tiny else 30)
        emit(args, {"variant": name, "cudnn_benchmark": torch.backends.cudnn.benchmark, **row})


# ----- how much of the wall time the GPU computes, for a small CIFAR config ---------------------------------
def busy_fraction(profile: torch.profiler.profile, wall_us: float) -> float | None:
    """Union of device kernel intervals over the wall time (None where no device activity was recorded)."""
    spans = sorted(
        (event.time_range.start, event.time_range.end)
        for event in profile.events()
        if event.device_type == torch.autograd.DeviceType.CUDA and event.time_range.end > event.time_range.start
    )
    if not spans or wall_us <= 0:
        return None
    covered, current_start, current_end = 0.0, *spans[0]
    for start, end in spans[1:]:
        if start > current_end:
            covered += current_end - current_start
            current_start, current_end = start, end
        else:
            current_end = max(current_end, end)
    covered += current_end - current_start
    return min(1.0, covered / wall_us)


class Profiled(Callback):
    """Profiles batches warmup .. warmup+steps-1 of a fit."""

    def __init__(self, warmup: int, steps: int, device: torch.device) -> None:
        self.warmup, self.steps, self.device, self.batches = warmup, steps, device, 0
        self.profile: torch.profiler.profile | None = None
        self.wall_us = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.batches += 1
        if self.batches == self.warmup:
            gpu_measure.sync(self.device)
            activities = [torch.profiler.ProfilerActivity.CPU]
            if self.device.type == "cuda":
                activities.append(torch.profiler.ProfilerActivity.CUDA)
            self.profile = torch.profiler.profile(activities=activities)
            self.profile.__enter__()
            self._started = time.perf_counter()
        elif self.batches == self.warmup + self.steps and self.profile is not None:
            gpu_measure.sync(self.device)
            self.wall_us = (time.perf_counter() - self._started) * 1e6
            self.profile.__exit__(None, None, None)


def busy(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    for batch in (8,) if args.tiny else (128, 512):
        built = build(SMALL_CIFAR, {**(TINY_VIT if args.tiny else {}), "data.init_args.batch_size": batch})
        warmup, steps = (1, 2) if args.tiny else (10, 20)
        synthetic = gpu_measure.SyntheticImages(
            built.datamodule, batch, warmup + steps + 2, uint8=True, pin_memory=device.type == "cuda"
        )
        profiled = Profiled(warmup, steps, device)
        # the experiment's step settings (clipping, accumulation), as bench/gpu.py times a step
        trainer = gpu_measure.trainer_for(device, args.precision, built.trainer, profiled, warmup + steps + 1)
        trainer.fit(built.module, datamodule=synthetic)
        fraction = busy_fraction(profiled.profile, profiled.wall_us)
        emit(
            args,
            {
                "config": SMALL_CIFAR,
                "batch": batch,
                "step_ms": profiled.wall_us / steps / 1e3,
                "gpu_busy_fraction": fraction,
                "note": "" if fraction is not None else "no device kernels recorded (CPU run)",
            },
        )


# ----- which attention kernel runs ----------------------------------------------------------------------------
ATTENTION_MARKERS = ("flash", "fmha", "efficient_attention", "cudnn", "scaled_dot_product", "softmax")


def attention(args: argparse.Namespace) -> None:
    device = torch.device(args.device)
    for name in ("vit_b16", "igpt_s"):
        config = gpu.CONFIGS[name]
        overrides = {**(config.tiny if args.tiny else {}), "data.init_args.batch_size": 2 if args.tiny else 32}
        built = build(config.experiment, overrides)
        module = built.module.to(device).train()
        data = built.datamodule
        batch, size = overrides["data.init_args.batch_size"], data.image_size
        if hasattr(module, "tokenize"):  # ImageGPT reads palette tokens
            gpu_measure.prepare_synthetic(module)
            forward, inputs = module.model, torch.randint(0, module.hparams.palette_size, (batch, size**2))
        else:
            forward, inputs = module, torch.randn(batch, data.channels, size, size)
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
        activities = [torch.profiler.ProfilerActivity.CPU]
        if device.type == "cuda":
            activities.append(torch.profiler.ProfilerActivity.CUDA)
        with torch.profiler.profile(activities=activities) as profile:
            with torch.autocast(device.type, dtype=dtype, enabled=device.type == "cuda"):
                forward(inputs.to(device)).float().mean().backward()
            gpu_measure.sync(device)
        kernels = sorted(
            {
                event.name
                for event in profile.events()
                if any(marker in event.name.lower() for marker in ATTENTION_MARKERS)
            }
        )
        emit(args, {"config": name, "experiment": config.experiment, "attention_ops": kernels[:20]})


# ----- time to accuracy ---------------------------------------------------------------------------------------
class TestEvery(Callback):
    """Test accuracy every `every` seconds of training time (evaluation time not counted) and at the end."""

    def __init__(self, args: argparse.Namespace, every: float) -> None:
        self.args, self.every = args, every
        self.trained, self.next_at, self._since = 0.0, every, None
        self.curve: list[dict] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._since = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        gpu_measure.sync(pl_module.device)
        self.trained += time.perf_counter() - self._since
        if self.trained >= self.next_at:
            self.test(trainer, pl_module)
            self.next_at += self.every

    def on_train_end(self, trainer, pl_module) -> None:
        if not self.curve or self.curve[-1]["step"] != trainer.global_step:
            self.test(trainer, pl_module)

    @torch.no_grad()
    def test(self, trainer, pl_module) -> None:
        data, finish = trainer.datamodule, trainer.datamodule.device_finish(False)
        was_training, correct, seen = pl_module.training, 0, 0
        pl_module.eval()
        with torch.autocast(pl_module.device.type, dtype=torch.bfloat16, enabled=pl_module.device.type == "cuda"):
            for images, labels in data.test_dataloader():
                images, labels = images.to(pl_module.device), labels.to(pl_module.device)
                correct += int((pl_module(finish(images)).argmax(-1) == labels).sum())
                seen += len(labels)
        pl_module.train(was_training)
        point = {"train_seconds": round(self.trained, 2), "step": trainer.global_step, "test_acc": correct / seen}
        self.curve.append(point)
        emit(self.args, {"point": point})


def tta(args: argparse.Namespace) -> None:
    if not args.data_dir:
        raise SystemExit("gpu_steps.py tta: --data_dir DIR (CIFAR-10 train/ and test/ folders) is needed")
    batch = 8 if args.tiny else args.batch
    overrides = {
        **(TINY_VIT if args.tiny else {}),
        "data.init_args.data_dir": args.data_dir,
        "data.init_args.batch_size": batch,
        "data.init_args.num_workers": 0 if args.tiny else args.workers,
        "model.init_args.base_batch_size": 128,  # the YAML's lr is for its batch 128; scaled linearly
    }
    built = build(SMALL_CIFAR, overrides)
    every = args.seconds / 4
    tester = TestEvery(args, every)
    trainer = L.Trainer(
        accelerator=args.device,
        devices=1,
        precision=args.precision,
        max_epochs=args.epochs,
        max_time={"seconds": args.seconds},
        limit_val_batches=0,
        gradient_clip_val=built.trainer.get("gradient_clip_val"),
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[tester],
    )
    started = time.perf_counter()
    trainer.fit(built.module, datamodule=built.datamodule)
    best = max((p["test_acc"] for p in tester.curve), default=None)
    emit(
        args,
        {
            "config": SMALL_CIFAR,
            "batch": batch,
            "epochs_planned": args.epochs,
            "wall_seconds": round(time.perf_counter() - started, 1),
            "curve": tester.curve,
            "best_test_acc": best,
            "reached_0.90": any(p["test_acc"] >= 0.9 for p in tester.curve),
        },
    )


STEPS = {"resnet50": resnet50, "busy": busy, "attention": attention, "tta": tta}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("step", choices=sorted(STEPS))
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny shapes: checks that the step works")
    p.add_argument("--out", default=None, help="JSON-lines file each record is appended to")
    p.add_argument("--data_dir", default=None, help="tta: CIFAR-10 image folder (train/, test/)")
    p.add_argument("--seconds", type=float, default=120.0, help="tta: training time")
    p.add_argument("--epochs", type=int, default=20, help="tta: the schedule's length (max_time may stop it first)")
    p.add_argument("--batch", type=int, default=512, help="tta: batch size (lr scaled from the YAML's 128)")
    p.add_argument("--workers", type=int, default=8, help="tta: loader workers")
    args = p.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here; use --device cpu")
    args.precision = "bf16-mixed" if args.device == "cuda" else "32-true"
    warnings.filterwarnings("ignore", module="lightning")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    if args.device == "cuda":
        torch.set_float32_matmul_precision("high")
    STEPS[args.step](args)


if __name__ == "__main__":
    main()
