"""GPU training-step benchmark: throughput, FLOP utilisation and memory of vitlight's training step.

In one run: the chip's own bf16 matrix-multiply rate (8192-cube products); then the training
step (forward, loss, backward, gradient clipping where the recipe clips, AdamW, LR schedule) of
ViT-B/16 and ViT-S/16 at 224 px, ResNet-50 (channels_last) and iGPT-S on 32x32 images
(autoregressive, 1024 tokens), each in bf16 autocast, eager and torch.compile'd, on synthetic data
already on the device. Per config: images/s (tokens/s for iGPT), model FLOPs per step counted by
torch.utils.flop_counter on the meta device (vitlight.analysis.flops, attention on the math path so
that it is counted), MFU = FLOPs per step * steps/s / the measured matmul rate, and peak memory.
Then ViT-B/16 fed with real data (the decoded uint8 cache through a DataLoader with workers and
pinned memory, random-resized-crop + flip + normalise on the GPU; and vitlight's own train loader
with its CPU transforms), as a ratio to the synthetic-data rate. Goals missed are profiled.

    python bench/gpu.py --out bench/results/h200.md --out bench/results/h200.json --data_dir DIR
    python bench/gpu.py --device cpu --tiny --out /tmp/gpu.json     # seconds: checks that it works

The step is a manual replica of what Lightning's automatic optimization does with
precision="bf16-mixed" (see docs/performance.md); `--data_dir` is an image folder
(train/<class>/<files>) or a folder holding train.tar.gz and test.tar.gz of one; without it a
synthetic image folder is written to a temporary folder (the output says so). A config that fails
(out of memory, compile error) is recorded as failed and the run goes on; FILE (.md or .json) is
rewritten after every config, so a run stopped early keeps what it measured.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib
import importlib.util
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROOT = Path(__file__).resolve().parents[1]
if importlib.util.find_spec("vitlight") is None:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(ROOT))


def vitlight_module(name: str):
    """Imports a vitlight submodule; if its package's __init__ needs a package this machine lacks
    (the GPU machine has no jsonargparse, wandb, datasets, torchdata), imports the submodule alone."""
    try:
        return importlib.import_module(name)
    except ImportError:
        package = name.rpartition(".")[0]
        if package in sys.modules:  # the package imported: the module itself needs what is missing
            raise
        sys.modules[package] = importlib.util.module_from_spec(importlib.util.find_spec(package))
        return importlib.import_module(name)


flops_lib = vitlight_module("vitlight.analysis.flops")
igpt = vitlight_module("vitlight.models.igpt")
backbones = vitlight_module("vitlight.tasks.backbones")
optim = vitlight_module("vitlight.tasks.optim")
schedules = vitlight_module("vitlight.tasks.schedules")

NUM_CLASSES = 1000
NOT_MEASURED = "not measured on a GPU yet"
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
GOALS = {"vit_b16": 0.5, "igpt_s": 0.4, "real_data": 0.9}  # MFU with torch.compile; real/synthetic rate
NEEDS_S = {"eager": 20, "compile": 120, "real_data": 60, "profile": 20}  # least time left to start one (CUDA)


@dataclass(frozen=True)
class Config:
    """One measured model, with the recipe of the experiment YAML named in `recipe`."""

    title: str
    kind: str  # "classifier" (timm backbone, images) or "igpt" (ImageGPT, tokens)
    model: str  # timm name or iGPT preset
    image_size: int
    batch: int
    model_kwargs: dict = field(default_factory=dict)
    channels_last: bool = False
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.1
    label_smoothing: float = 0.1
    clip: float | None = 1.0  # _trainer.yaml: gradient_clip_val 1.0 (norm)
    warmup_steps: int = 10000
    recipe: str = "vit_b16_imagenet.yaml"

    @property
    def unit(self) -> str:
        return "tokens/s" if self.kind == "igpt" else "images/s"

    @property
    def items(self) -> int:
        """Images (tokens for iGPT) per step."""
        return self.batch * (self.image_size**2 if self.kind == "igpt" else 1)


IGPT_RECIPE = dict(lr=1e-3, betas=(0.9, 0.95), weight_decay=0.0, label_smoothing=0.0, clip=None,
                   warmup_steps=0, recipe="igpt_s_cifar10.yaml + _trainer_pretrain.yaml")
CONFIGS = {  # in the order they run: the two with goals first
    "vit_b16": Config("ViT-B/16 224px", "classifier", "vit_base_patch16_224", 224, 256, {"drop_path_rate": 0.1}),
    "igpt_s": Config("iGPT-S 32x32 AR", "igpt", "igpt-s", 32, 64, **IGPT_RECIPE),
    "vit_s16": Config("ViT-S/16 224px", "classifier", "vit_small_patch16_224", 224, 512, {"drop_path_rate": 0.1},
                      recipe="vit_b16_imagenet.yaml at ViT-S size"),
    "resnet50": Config("ResNet-50 224px NHWC", "classifier", "resnet50", 224, 256, channels_last=True,
                       recipe="resnet50_imagenet.yaml"),
}
TINY = {  # --tiny: the same code on shapes a CPU runs in seconds
    "vit_b16": dict(title="ViT-Ti/8 32px (tiny)", model="vit_tiny_patch16_224", image_size=32,
                    model_kwargs={"patch_size": 8, "depth": 2, "drop_path_rate": 0.1}),
    "vit_s16": dict(title="ViT-S/16 32px 1 block (tiny)", image_size=32, model_kwargs={"depth": 1}),
    "resnet50": dict(title="ResNet-18 32px (tiny)", model="resnet18", image_size=32),
    "igpt_s": dict(title="iGPT-tiny 8x8 AR (tiny)", model="igpt-tiny", image_size=8),
}
NAMES = (*CONFIGS, "real_data")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", action="append", default=[], help="result file, .md or .json (repeatable)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny models and batch 2: checks that the script works")
    p.add_argument("--only", default=",".join(NAMES), help=f"comma-separated subset of {', '.join(NAMES)}")
    p.add_argument("--modes", default="eager,compile", help="eager, compile or both")
    p.add_argument("--compile", action="store_true", help="run torch.compile on a CPU too (takes minutes)")
    p.add_argument("--compile_mode", default="default", help="torch.compile mode, e.g. max-autotune-no-cudagraphs")
    p.add_argument("--batch", default="", help="batch overrides, e.g. vit_b16=128,igpt_s=32")
    p.add_argument("--steps", type=int, default=None, help="timed steps per round (default 20; tiny 2)")
    p.add_argument("--rounds", type=int, default=None, help="timed rounds, the median counts (default 3; tiny 1)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3; tiny 1)")
    p.add_argument("--matmul_size", type=int, default=None, help="side of the bf16 matmul (default 8192; tiny 256)")
    p.add_argument("--data_dir", default=None, help="image folder, or folder with train.tar.gz and test.tar.gz")
    p.add_argument("--workers", type=int, default=None, help="loader workers (default: CPUs - 2, at most 12; tiny 1)")
    p.add_argument("--profile", choices=("auto", "always", "never"), default="auto",
                   help="profile configs whose goal is missed (auto), every config, or none")
    p.add_argument("--max_minutes", type=float, default=7.5, help="configs that would not fit are skipped")
    a = p.parse_args(argv)
    a.argv = sys.argv[1:] if argv is None else list(argv)
    a.only = [n.strip() for n in a.only.split(",") if n.strip()]
    a.modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if not a.only or any(n not in NAMES for n in a.only):
        p.error(f"--only {','.join(n for n in a.only if n not in NAMES) or '(none)'}: choose from {', '.join(NAMES)}")
    if "real_data" in a.only and "vit_b16" not in a.only:
        p.error("--only real_data needs vit_b16 too (the real-data step is ViT-B/16's)")
    if not a.modes or any(m not in ("eager", "compile") for m in a.modes):
        p.error(f"--modes {','.join(a.modes) or '(none)'}: choose from eager, compile")
    if any(Path(o).suffix not in (".md", ".json") for o in a.out):
        p.error(f"--out {' '.join(a.out)}: each file must end in .md or .json")
    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no CUDA device here; use --device cpu")
    try:
        a.batch = {k.strip(): int(v) for k, v in (item.split("=") for item in a.batch.split(",") if item.strip())}
    except ValueError:
        p.error(f"--batch {a.batch}: write name=size pairs, e.g. vit_b16=128,igpt_s=32")
    if any(k not in CONFIGS or v < 1 for k, v in a.batch.items()):
        p.error(f"--batch: names from {', '.join(CONFIGS)}, sizes at least 1")
    small = a.tiny or a.device == "cpu"
    a.steps = a.steps or (2 if small else 20)
    a.rounds = a.rounds or (1 if small else 3)
    a.warmup = 1 if a.warmup is None and small else (3 if a.warmup is None else a.warmup)
    a.matmul_size = a.matmul_size or (256 if small else 8192)
    a.workers = a.workers if a.workers is not None else (1 if small else max(1, min(12, (os.cpu_count() or 4) - 2)))
    return a


def configs(args: argparse.Namespace) -> dict[str, Config]:
    out = {}
    for name in (n for n in CONFIGS if n in args.only):
        cfg = CONFIGS[name]
        if args.tiny:
            cfg = replace(cfg, batch=2, **TINY[name])
        out[name] = replace(cfg, batch=args.batch.get(name, cfg.batch))
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ----- the two ceilings' one: the chip's bf16 matmul rate ------------------------------------------
def matmul_rate(device: torch.device, size: int, rounds: int = 3, reps: int = 10) -> float:
    """FLOP/s of size-cube bf16 products on random data: the median of `rounds` rounds of `reps`."""
    a, b = (torch.randn(size, size, device=device, dtype=torch.bfloat16) for _ in range(2))
    c = torch.empty_like(a)
    for _ in range(3):
        torch.mm(a, b, out=c)
    rates = []
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        sync(device)
        rates.append(2 * size**3 * reps / (time.perf_counter() - start))
    return float(np.median(rates))


# ----- the training step ---------------------------------------------------------------------------
def build_model(cfg: Config) -> nn.Module:
    if cfg.kind == "igpt":
        return igpt.ImageGPT(igpt.igpt_config(cfg.model, n_positions=cfg.image_size**2))
    return backbones.create_backbone(cfg.model, NUM_CLASSES, cfg.image_size, 3, dict(cfg.model_kwargs))


def step_flops(cfg: Config) -> int:
    """Forward + loss + backward FLOPs of one step, counted on the meta device."""
    if cfg.kind == "igpt":
        return flops_lib.count_training_flops(lambda: build_model(cfg), (cfg.batch, cfg.image_size**2), dtype=torch.long).train_step
    return flops_lib.count_training_flops(lambda: build_model(cfg), (cfg.batch, 3, cfg.image_size, cfg.image_size)).train_step


@dataclass
class Trainee:
    step: Callable[[Tensor, Tensor], Tensor]  # one optimizer step on (inputs, targets); returns the loss
    inputs: tuple[Tensor, Tensor]  # a synthetic batch on the device


def build_trainee(cfg: Config, device: torch.device, compile_mode: str | None) -> Trainee:
    """The vitlight training step, as Lightning's automatic optimization runs it in bf16-mixed:
    autocast(forward + loss), zero_grad(set_to_none), backward, clip, optimizer.step, scheduler.step."""
    net = build_model(cfg).to(device)
    if cfg.channels_last:
        net = net.to(memory_format=torch.channels_last)  # ImageClassifier.on_fit_start
    optimizer = torch.optim.AdamW(optim.weight_decay_groups(net), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    scheduler = schedules.WarmupCosine(optimizer, warmup_steps=cfg.warmup_steps, warmup_fraction=0.01)
    scheduler.set_total_steps(100_000)
    model = torch.compile(net, mode=compile_mode) if compile_mode else net  # as ImageClassifier.configure_model
    params = [p for group in optimizer.param_groups for p in group["params"]]

    def loss_of(x: Tensor, y: Tensor) -> Tensor:
        if cfg.kind == "igpt":  # PixelPretrainer.losses, autoregressive: next-token cross-entropy
            return F.cross_entropy(model(x).flatten(0, 1), x.flatten())
        if cfg.channels_last:  # ImageClassifier.forward
            x = x.contiguous(memory_format=torch.channels_last)
        return F.cross_entropy(model(x), y, label_smoothing=cfg.label_smoothing)

    def step(x: Tensor, y: Tensor) -> Tensor:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = loss_of(x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.clip:
            torch.nn.utils.clip_grad_norm_(params, cfg.clip)
        optimizer.step()
        scheduler.step()
        return loss.detach()

    if cfg.kind == "igpt":
        tokens = torch.randint(0, net.cfg.vocab_size, (cfg.batch, cfg.image_size**2), device=device)
        return Trainee(step, (tokens, tokens))
    images = torch.randn(cfg.batch, 3, cfg.image_size, cfg.image_size, device=device)
    return Trainee(step, (images, torch.randint(0, NUM_CLASSES, (cfg.batch,), device=device)))


def seconds_per_step(trainee: Trainee, device: torch.device, steps: int, rounds: int, check_loss: bool = False) -> float:
    """The median over `rounds` of the mean step time of `steps` steps (warmed up by the caller).

    `check_loss` reads whether the loss is finite after every step, as vitlight fit's NonFiniteLossGuard
    (and Lightning's progress bar reading the loss) do: the host then waits for the device every step."""
    times = []
    for _ in range(rounds):
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            loss = trainee.step(*trainee.inputs)
            if check_loss and not bool(torch.isfinite(loss)):
                raise FloatingPointError(f"non-finite loss {loss.item()}")
        sync(device)
        times.append((time.perf_counter() - start) / steps)
    return float(np.median(times))


# ----- profiling a missed goal ----------------------------------------------------------------------
CATEGORIES = (  # first match wins, on the lower-case kernel (CUDA) or op (CPU) name
    ("attention", ("flash", "fmha", "attention", "sdpa")),
    ("matmul/conv", ("triton_tem", "gemm", "cutlass", "xmma", "nvjet", "cublas", "conv", "aten::mm", "aten::addmm", "aten::bmm")),
    ("optimizer/clip", ("adam", "foreach", "multi_tensor", "lerp", "clip")),
    ("copy/cast", ("memcpy", "memset", "copy")),
)
OTHER = "elementwise/norm/other"


def category(name: str) -> str:
    name = name.lower()
    if name.startswith("triton_") and not name.startswith("triton_tem"):
        return OTHER  # Inductor's fused pointwise/reduction kernels are named after the ops they fuse
    return next((kind for kind, words in CATEGORIES if any(w in name for w in words)), OTHER)


def profile_step(trainee: Trainee, device: torch.device, step_s: float, steps: int = 3) -> dict:
    """Shares of the step time by kernel kind, the host's idle share, and the costliest kernels."""
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    cuda = device.type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(steps):
            trainee.step(*trainee.inputs)
        sync(device)
    per_name: dict[str, float] = {}
    for event in prof.key_averages():
        if cuda and (event.device_type != DeviceType.CUDA or getattr(event, "is_user_annotation", False)):
            continue  # kernels only: annotations on the GPU timeline span kernels counted already
        us = getattr(event, "self_device_time_total", 0) if cuda else event.self_cpu_time_total
        if us > 0 and not event.key.startswith("ProfilerStep"):
            per_name[event.key] = per_name.get(event.key, 0.0) + us / 1e3 / steps  # ms per step
    shares: dict[str, float] = {}
    for name, ms in per_name.items():
        shares[category(name)] = shares.get(category(name), 0.0) + ms / (step_s * 1e3)
    busy = sum(per_name.values()) / (step_s * 1e3)
    if cuda:
        shares["GPU idle (host, launches, syncs)"] = max(0.0, 1.0 - busy)
    top = sorted(per_name.items(), key=lambda kv: -kv[1])[:8]
    return {"step_ms": step_s * 1e3, "busy_ms": sum(per_name.values()), "shares": dict(sorted(shares.items(), key=lambda kv: -kv[1])),
            "top": [{"name": n[:120], "ms_per_step": round(ms, 3)} for n, ms in top]}


def diagnose(profile: dict, flops: int, peak: float) -> str:
    """What limits the step, read off a profile, and what would close the gap (hints, not numbers)."""
    s = profile["shares"]
    parts = [", ".join(f"{k} {v:.0%}" for k, v in s.items())]
    mm_ms = (s.get("matmul/conv", 0) + s.get("attention", 0)) * profile["step_ms"]
    if mm_ms > 0:
        parts.append(f"matmul+attention kernels alone run at {flops / (mm_ms / 1e3) / peak:.2f} of the measured matmul rate")
    hints = []
    if s.get("GPU idle (host, launches, syncs)", 0) > 0.15:
        hints.append("the GPU waits for the host: CUDA graphs (torch.compile mode='reduce-overhead') or a larger batch")
    if s.get("optimizer/clip", 0) > 0.08:
        hints.append("AdamW(fused=True) or a compiled optimizer step (one kernel instead of many)")
    if s.get(OTHER, 0) + s.get("copy/cast", 0) > 0.2:
        hints.append("memory-bound norms/activations/loss: fuse more (compile the loss too, max-autotune), or wider matmuls")
    if s.get("attention", 0) > 0.25:
        hints.append("attention-heavy: check that the flash backend runs; causal masking is counted in full by flop_counter")
    return "; ".join(parts) + (". Would close it: " + "; ".join(hints) if hints else "")


# ----- real data: decoded cache, loader workers, augmentation on the GPU ----------------------------
def image_folder(data_dir: str | None, scratch: Path, tiny: bool) -> tuple[Path, str]:
    """(an image folder with train/, where it came from): `data_dir`, its archives unpacked, or a synthetic one."""
    if data_dir is None:
        from PIL import Image

        classes, per_class, size = (2, 8, 16) if tiny else (10, 256, 224)
        rng = np.random.default_rng(0)
        for split, count in (("train", per_class), ("test", max(1, per_class // 8))):
            for c in range(classes):
                (scratch / "images" / split / f"c{c}").mkdir(parents=True, exist_ok=True)
                for i in range(count):
                    low = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).resize((size, size), Image.BILINEAR)
                    low.save(scratch / "images" / split / f"c{c}" / f"{i}.jpg", quality=90)
        return scratch / "images", f"synthetic image folder ({classes} classes x {per_class} JPEGs of {size} px; no --data_dir given)"
    root = Path(data_dir).expanduser()
    if (root / "train").is_dir():
        return root, str(root)
    archives = [root / "train.tar.gz", root / "test.tar.gz"]
    if not all(a.is_file() for a in archives):
        sys.exit(f"gpu.py: --data_dir {root} holds neither train/ nor train.tar.gz and test.tar.gz")
    for archive in archives:
        with tarfile.open(archive) as tar:
            tar.extractall(scratch / "images", filter="data")
    return scratch / "images", f"{root} (unpacked)"


@dataclass
class Cache:
    images: object  # uint8 (N, H, W, C), numpy memmap or vitlight MappedImages
    rows: np.ndarray
    labels: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str
    module: object | None  # the vitlight ImageFolder data module, when vitlight.data imports here


def decoded_cache(folder: Path, scratch: Path, cfg: Config, workers: int) -> Cache:
    """vitlight's decode cache of the train split; a plain uint8 memmap where vitlight.data fails here."""
    try:
        from vitlight.data import ImageFolder

        module = ImageFolder(data_dir=str(folder), test_folder="test" if (folder / "test").is_dir() else "train",
                             image_size=cfg.image_size, batch_size=cfg.batch, num_workers=workers, random_resized_crop=True,
                             horizontal_flip=True, cache=True, cache_dir=str(scratch / "cache"))
        module.setup()
    except Exception as caught:  # e.g. torchdata missing on the GPU machine
        return _memmap_cache(folder, scratch, f"vitlight.data failed here: {_error(caught)}")
    split = module.splits["train"]
    rows = np.arange(len(split)) if split.rows is None else np.asarray(split.rows)
    mean, std = module.transform_settings.mean, module.transform_settings.std
    return Cache(split.images, rows, np.asarray(split.labels), mean, std, "vitlight decode cache", module)


def _memmap_cache(folder: Path, scratch: Path, why: str) -> Cache:
    from PIL import Image

    classes = sorted(d.name for d in (folder / "train").iterdir() if d.is_dir())
    files = [(f, c) for c, name in enumerate(classes) for f in sorted((folder / "train" / name).iterdir()) if f.is_file()]
    with Image.open(files[0][0]) as first:
        width, height = first.size
    images = np.lib.format.open_memmap(scratch / "images.npy", mode="w+", dtype=np.uint8, shape=(len(files), height, width, 3))
    for i, (path, _) in enumerate(files):
        with Image.open(path) as image:
            images[i] = np.asarray(image.convert("RGB").resize((width, height)))
    images.flush()
    labels = np.array([c for _, c in files], dtype=np.int64)
    return Cache(np.load(scratch / "images.npy", mmap_mode="r"), np.arange(len(files)), labels,
                 IMAGENET_MEAN, IMAGENET_STD, f"uint8 memmap decoded by bench/gpu.py ({why})", None)


class CachedBatches(torch.utils.data.Dataset):
    """uint8 (B, H, W, C) batches read from the cache in one indexing operation per batch."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache

    def __len__(self) -> int:
        return len(self.cache.rows)

    def __getitems__(self, indices: list[int]) -> tuple[Tensor, Tensor]:
        indices = np.sort(np.asarray(indices))  # in file order: fewer page faults on the memory map
        pixels = np.asarray(self.cache.images[self.cache.rows[indices]])
        return torch.from_numpy(pixels), torch.from_numpy(self.cache.labels[indices])


def _as_is(batch):
    return batch


def crop_params(batch: int, device: torch.device, scale_min: float = 0.08) -> Tensor:
    """(B, 2, 3) affine maps of a RandomResizedCrop (area in [scale_min, 1], aspect 3/4..4/3) and a flip."""
    area = torch.empty(batch, device=device).uniform_(scale_min, 1.0)
    ratio = torch.empty(batch, device=device).uniform_(math.log(3 / 4), math.log(4 / 3)).exp()
    w, h = (area * ratio).sqrt().clamp(max=1.0), (area / ratio).sqrt().clamp(max=1.0)  # fractions of the side
    flip = torch.where(torch.rand(batch, device=device) < 0.5, -1.0, 1.0)
    theta = torch.zeros(batch, 2, 3, device=device)
    theta[:, 0, 0], theta[:, 1, 1] = w * flip, h
    theta[:, 0, 2] = (torch.rand(batch, device=device) * 2 - 1) * (1 - w)
    theta[:, 1, 2] = (torch.rand(batch, device=device) * 2 - 1) * (1 - h)
    return theta


def gpu_augment(images: Tensor, theta: Tensor, size: int, mean: Tensor, std: Tensor) -> Tensor:
    """uint8 (B, H, W, C) -> normalized float32 (B, C, size, size): crop, flip and resize in one grid_sample.

    `mean` and `std` are (1, C, 1, 1) tensors on the images' device (made once: a tensor built from a
    Python list on the GPU is a blocking copy)."""
    x = images.permute(0, 3, 1, 2).float()  # (B, C, H, W)
    grid = F.affine_grid(theta, [x.shape[0], x.shape[1], size, size], align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return x.mul_(1 / 255).sub_(mean).div_(std)


class Batches:
    """Endless full batches from a loader (a short last batch would make torch.compile recompile)."""

    def __init__(self, loader, batch: int) -> None:
        self.loader, self.batch, self.iterator = loader, batch, iter(loader)
        self.queued = loader.num_workers * (getattr(loader, "prefetch_factor", 2) or 0)  # batches ready in the workers

    def next(self) -> tuple[Tensor, Tensor]:
        while True:
            try:
                images, labels = next(self.iterator)
            except StopIteration:
                self.iterator = iter(self.loader)
                continue
            if len(labels) == self.batch:
                return images, labels


def real_data_rate(trainee: Trainee, batches: Batches, prepare: Callable, device: torch.device, warmup: int, steps: int) -> dict:
    """images/s of the step fed by `batches` (`prepare` maps a batch on the device to the step's inputs),
    the share of that time the host waited for the loader, and the rate of the loader alone."""
    waited = 0.0
    for i in range(warmup + steps):  # the warm-up also spends the burst of the workers' first batches
        if i == warmup:
            sync(device)
            start, waited = time.perf_counter(), 0.0
        asked = time.perf_counter()
        images, labels = batches.next()
        waited += time.perf_counter() - asked
        trainee.step(*prepare(images.to(device, non_blocking=True), labels.to(device, non_blocking=True)))
    sync(device)
    elapsed = time.perf_counter() - start
    for _ in range(batches.queued):  # the loader alone, timed once the batches queued meanwhile are spent
        batches.next()
    sync(device)
    alone = time.perf_counter()
    for _ in range(steps):
        batches.next()[0].to(device, non_blocking=True)
    sync(device)
    return {"rate": steps * batches.batch / elapsed, "data_wait_fraction": waited / elapsed,
            "loader_only_rate": steps * batches.batch / (time.perf_counter() - alone)}


def measure_real_data(trainee: Trainee, cfg: Config, cache: Cache, args, device: torch.device, synthetic_rate: float, mode: str) -> list[dict]:
    """Two rows: the cache + GPU augmentation, and vitlight's own train loader (CPU transforms in workers)."""
    cuda = device.type == "cuda"
    steps, warmup = args.steps * args.rounds, max(args.warmup, 2 * args.workers + 2 if cuda else 1)

    mean, std = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (cache.mean, cache.std))

    def augment(images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        return gpu_augment(images, crop_params(len(labels), device), cfg.image_size, mean, std), labels

    def ours():
        return torch.utils.data.DataLoader(
            CachedBatches(cache), batch_size=cfg.batch, shuffle=True, drop_last=True, num_workers=args.workers,
            pin_memory=cuda, persistent_workers=args.workers > 0, prefetch_factor=4 if args.workers > 0 else None,
            collate_fn=_as_is)

    pipelines = [("cache + GPU augmentation", ours, augment, cache.source)]
    if cache.module is not None:
        pipelines.append(("vitlight train loader (CPU transforms)", cache.module.train_dataloader, lambda x, y: (x, y),
                          "vitlight ImageFolder.train_dataloader(): RandomResizedCrop, flip, normalize in the workers"))
    rows = []
    for name, make_loader, prepare, source in pipelines:
        row = {"pipeline": name, "source": source, "mode": mode, "batch": cfg.batch, "workers": args.workers,
               "synthetic_rate": synthetic_rate, "status": "ok", "note": ""}
        batches = None
        try:
            batches = Batches(make_loader(), cfg.batch)
            row.update(real_data_rate(trainee, batches, prepare, device, warmup, steps))
            row["ratio"] = row["rate"] / synthetic_rate
            if cuda and prepare is augment:  # the augmentation's own GPU time per batch
                sample = batches.next()[0].to(device)
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                begin.record()
                for _ in range(5):
                    augment(sample, sample[:, 0, 0, 0])
                end.record()
                sync(device)
                row["augment_ms"] = begin.elapsed_time(end) / 5
        except Exception as caught:
            row.update(status="failed", note=_error(caught))
        del batches  # ends the loader's workers
        rows.append(row)
    return rows


def real_data_note(row: dict) -> str:
    """What limits a real-data rate below the goal, read off the loader-only rate and the host's wait."""
    if row.get("loader_only_rate", 0) < 1.1 * row["synthetic_rate"]:
        return (f"loader-bound: the loader alone delivers {row['loader_only_rate']:.0f} images/s. Would close it: "
                "more workers, uint8 batches with augmentation on the GPU, or a faster cache read")
    return (f"the host waited for data {row['data_wait_fraction']:.0%} of the time though the loader alone is fast enough: "
            "overlap better (more prefetch, pinned memory) or move per-image work to the GPU")


# ----- the run -------------------------------------------------------------------------------------
def environment(device: torch.device, args: argparse.Namespace) -> dict:
    def version(name: str) -> str | None:
        try:
            return importlib.import_module(name).__version__
        except Exception:
            return None

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
        commit = f"{commit}{' (uncommitted changes)' if dirty else ''}" or None
    except Exception:
        commit = None
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": shlex.join(["python", "bench/gpu.py", *args.argv]),
            "device": device.type, "gpu": gpu, "cpus": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
            "timm": version("timm"), "lightning": version("lightning"), "vitlight_commit": commit, "tiny": args.tiny,
            "steps": args.steps, "rounds": args.rounds, "warmup": args.warmup, "workers": args.workers}


def goals(report: dict) -> list[dict]:
    out = []
    on_gpu = report["environment"]["device"] == "cuda"
    for name, target in GOALS.items():
        if name == "real_data":
            rows, key = [r for r in report["real_data"] if r["pipeline"].startswith("cache")], "ratio"
            what = "ViT-B/16 real data / synthetic rate"
        else:
            rows, key = [r for r in report["steps"] if r["config"] == name and r["mode"] == "compile"], "mfu"
            what = f"{CONFIGS[name].title} MFU with torch.compile"
        row = rows[0] if rows else None
        value = row.get(key) if on_gpu and row and row["status"] == "ok" else None
        if not on_gpu:
            status = NOT_MEASURED
        elif value is None:
            status = f"not measured: {row['status']} {row.get('note', '')}".strip() if row else "not measured: not in --only"
        else:
            status = "met" if value >= target else "missed"
        note = row.get("diagnosis", "") if status == "missed" else ""
        out.append({"goal": what, "target": target, "value": value, "status": status, "note": note})
    return out


def _num(value, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def markdown(report: dict) -> str:
    env, mm = report["environment"], report["matmul"]
    lines = ["# vitlight training-step benchmark", "",
             f"{env['date']}; {env['gpu'] or 'CPU'} ({env['cpus']} CPUs); Python {env['python']}, torch {env['torch']}, "
             f"CUDA {env['cuda']}, timm {env['timm']}, lightning {env['lightning']}; vitlight {env['vitlight_commit']}",
             "", f"Command: `{env['command']}`", ""]
    if env["device"] != "cuda":
        lines += ["Measured on a CPU" + (" with --tiny shapes" if env["tiny"] else "") + ": this checks that the script works; "
                  f"the GPU numbers are {NOT_MEASURED}.", ""]
    lines += [f"bf16 matmul ({mm.get('size')}-cube): {_num(mm.get('tflops'), '.4g')} TFLOP/s {mm.get('note', '')}".rstrip(), "",
              "| model | mode | batch | step ms (with loss check) | throughput | GFLOP/step | TFLOP/s | MFU | peak GiB | status |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(report["steps"], key=lambda r: (list(CONFIGS).index(r["config"]), r["mode"] != "eager")):
        rate = f"{r['rate']:.0f} {r['unit']}" if r.get("rate") else "-"
        status = r["status"] + (f": {r['note']}" if r.get("note") else "")
        step = f"{r['step_ms']:.1f} ({r['step_ms_loss_check']:.1f})" if r.get("step_ms") else "-"
        lines.append(f"| {r['model']} | {r['mode']} | {r['batch']} | {step} | {rate} | "
                     f"{_num(r.get('flops_per_step') and r['flops_per_step'] / 1e9, '.4g')} | {_num(r.get('tflops'), '.3g')} | "
                     f"{_num(r.get('mfu'), '.3f')} | {_num(r.get('peak_gib'), '.1f')} | {status} |")
    if report["real_data"]:
        lines += ["", f"Real data: {report.get('real_data_origin', '-')}", "", "| ViT-B/16 step fed by | mode | batch | workers | images/s | synthetic images/s | ratio | loader alone images/s | "
                  "host waits for data | status |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in report["real_data"]:
            status = r["status"] + (f": {r['note']}" if r.get("note") else "")
            lines.append(f"| {r['pipeline']} | {r['mode']} | {r['batch']} | {r['workers']} | {_num(r.get('rate'), '.0f')} | "
                         f"{_num(r.get('synthetic_rate'), '.0f')} | {_num(r.get('ratio'), '.3f')} | {_num(r.get('loader_only_rate'), '.0f')} | "
                         f"{_num(r.get('data_wait_fraction'), '.0%')} | {status} |")
    lines += ["", "| goal | target | measured | status | what limits it |", "|---|---|---|---|---|"]
    lines += [f"| {g['goal']} | {g['target']} | {_num(g['value'], '.3f')} | {g['status']} | {g['note']} |" for g in report["goals"]]
    return "\n".join(lines) + "\n"


def write(report: dict, outs: list[str]) -> None:
    report["goals"] = goals(report)
    for out in outs:
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1) + "\n" if path.suffix == ".json" else markdown(report))


def _error(caught: BaseException) -> str:
    message = str(caught).strip().splitlines()
    return f"{type(caught).__name__}: {message[0][:300] if message else ''}"


class Run:
    """One benchmark run: the report, the time budget, and the measured configs in order."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.device = args, torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.started = time.perf_counter()
        self.deadline = self.started + args.max_minutes * 60
        self.report = {"environment": environment(self.device, args), "matmul": {}, "steps": [], "real_data": [], "goals": []}
        self.rate = float("nan")  # the measured bf16 matmul FLOP/s
        self.cache: Cache | None = None

    def log(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:5.0f} s] {message}", flush=True)

    def over_budget(self, what: str) -> str | None:
        """Why `what` is not started (too little of --max_minutes left), or None."""
        need, left = (NEEDS_S[what] if self.cuda else 0), self.deadline - time.perf_counter()
        return None if left >= need else f"--max_minutes {self.args.max_minutes}: {left:.0f} s left, {what} needs about {need} s"

    def write(self) -> None:
        write(self.report, self.args.out)

    def matmul(self) -> None:
        size = self.args.matmul_size
        self.rate = matmul_rate(self.device, size)
        self.report["matmul"] = {"size": size, "dtype": "bfloat16", "tflops": self.rate / 1e12, "note": "" if self.cuda else "(CPU)"}
        self.log(f"bf16 matmul {size}-cube: {self.rate / 1e12:.2f} TFLOP/s")
        self.write()

    def config(self, name: str, cfg: Config, mode: str, scratch: Path, real_data: bool) -> None:
        """Measures one config in one mode (and, with `real_data`, the real-data rows after it if it ran)."""
        row = {"config": name, "model": cfg.title, "mode": mode, "batch": cfg.batch, "unit": cfg.unit, "recipe": cfg.recipe,
               "status": "ok", "note": ""}
        self.report["steps"].append(row)
        if mode == "compile" and not self.cuda and not self.args.compile:
            row.update(status="skipped", note="torch.compile on a CPU takes minutes; --compile runs it")
        elif why := self.over_budget(mode):
            row.update(status="skipped", note=why)
        else:
            trainee = None
            try:
                trainee = self._measure(row, cfg, mode)
            except Exception as caught:  # out of memory, compile errors: recorded, the run goes on
                row.update(status="failed", note=_error(caught))
            if trainee is not None and real_data:
                self.real_data(trainee, cfg, mode, row["rate"], scratch)
            del trainee
            gc.collect()
            if self.cuda:
                torch.cuda.empty_cache()
            if mode == "compile":
                torch._dynamo.reset()
        done = f"{row['rate']:.0f} {cfg.unit}, MFU {row['mfu']:.3f}" if row["status"] == "ok" else f"{row['status']}: {row['note']}"
        self.log(f"{name} {mode}: {done}")
        self.write()

    def _measure(self, row: dict, cfg: Config, mode: str) -> Trainee:
        args, device = self.args, self.device
        row["flops_per_step"] = step_flops(cfg)
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
        trainee = build_trainee(cfg, device, args.compile_mode if mode == "compile" else None)
        for _ in range(args.warmup + (2 if mode == "compile" else 0)):
            trainee.step(*trainee.inputs)
        step_s = seconds_per_step(trainee, device, args.steps, args.rounds)
        row["step_ms_loss_check"] = seconds_per_step(trainee, device, args.steps, 1, check_loss=True) * 1e3
        flops_per_s = row["flops_per_step"] / step_s
        row.update(step_ms=step_s * 1e3, rate=cfg.items / step_s, tflops=flops_per_s / 1e12, mfu=flops_per_s / self.rate)
        if self.cuda:
            row["peak_gib"] = (torch.cuda.max_memory_allocated(device) - base) / 2**30
        goal = GOALS.get(row["config"]) if mode == "compile" else None
        missed = self.cuda and goal is not None and row["mfu"] < goal
        if (args.profile == "always" or (args.profile == "auto" and missed)) and not self.over_budget("profile"):
            try:
                row["profile"] = profile_step(trainee, device, step_s)
                row["diagnosis"] = diagnose(row["profile"], row["flops_per_step"], self.rate)
            except Exception as caught:
                row["diagnosis"] = f"profiling failed: {_error(caught)}"
        return trainee

    def real_data(self, trainee: Trainee, cfg: Config, mode: str, synthetic_rate: float, scratch: Path) -> None:
        base = {"pipeline": "cache + GPU augmentation", "source": "-", "mode": mode, "batch": cfg.batch, "workers": self.args.workers}
        if why := self.over_budget("real_data"):
            self.report["real_data"].append({**base, "status": "skipped", "note": why})
            return
        try:
            if self.cache is None:
                folder, origin = image_folder(self.args.data_dir, scratch, self.args.tiny)
                began = time.perf_counter()
                self.cache = decoded_cache(folder, scratch, cfg, self.args.workers)
                height, width = self.cache.images.shape[1:3]
                self.report["real_data_origin"] = (f"{origin}; {len(self.cache.rows)} train images of {height}x{width} px "
                                                   f"in the {self.cache.source}")
                self.log(f"real data: {self.report['real_data_origin']} (ready in {time.perf_counter() - began:.0f} s)")
            rows = measure_real_data(trainee, cfg, self.cache, self.args, self.device, synthetic_rate, mode)
        except Exception as caught:
            rows = [{**base, "status": "failed", "note": _error(caught)}]
        for r in rows:
            if self.cuda and r["status"] == "ok" and r["ratio"] < GOALS["real_data"]:
                r["diagnosis"] = real_data_note(r)
            self.log(f"real data, {r['pipeline']}: " + (f"{r['rate']:.0f} images/s, ratio {r['ratio']:.3f}" if r["status"] == "ok" else f"{r['status']}: {r['note']}"))
        self.report["real_data"] += rows


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    torch.manual_seed(0)
    run = Run(args)
    run.matmul()
    with tempfile.TemporaryDirectory(prefix="vitlight-gpu-bench-") as scratch:
        for name, cfg in configs(args).items():
            real = name == "vit_b16" and "real_data" in args.only
            compiles = run.cuda or args.compile
            # real data is fed to the first ViT-B/16 step that runs: the compiled one where it compiles
            for mode in sorted(args.modes, key=lambda m: m != "compile") if real and compiles else args.modes:
                run.config(name, cfg, mode, Path(scratch), real_data=real and not run.report["real_data"])
            if real and not run.report["real_data"]:
                run.report["real_data"].append({"pipeline": "cache + GPU augmentation", "source": "-", "mode": "-", "batch": cfg.batch,
                                                "workers": args.workers, "status": "not run", "note": "no ViT-B/16 step ran"})
    run.write()
    print(markdown(run.report), end="")


if __name__ == "__main__":
    main()
