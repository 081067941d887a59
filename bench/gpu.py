"""GPU benchmark of vitlight's own training path: what `vitlight fit --config experiments/X.yaml` trains,
run by a Lightning Trainer, on synthetic uint8 batches and on the experiment's own data module.

Per config (ViT-B/16 and ResNet-50 at 224 px, iGPT-S at 32x32), eager and torch.compile'd
(`model.init_args.compile`), bf16-mixed with TF32 on CUDA: images/s, MFU against the chip's
datasheet dense bf16 peak and against the bf16 matmul rate measured in the same run (8192-cube),
peak memory, host syncs per step in vitlight's own code (vitlight.syncs.HostSyncCounter, eager
rows) and, with real data, the loader's own images/s and the real/synthetic ratio.

    python bench/gpu.py --data_dir igpt_s=DIR --out bench/results/h200.md --out bench/results/h200.json
    python bench/gpu.py --device cpu --tiny --out /tmp/gpu.json     # seconds: checks that it works

`--data_dir DIR` points every config's data module at DIR (`--data.data_dir` of the CLI);
`--data_dir NAME=DIR` one config's. The module and data module are built from the YAML by
bench/gpu_build.py (no jsonargparse needed); measuring is bench/gpu_measure.py, the record
bench/gpu_report.py. A config that fails is recorded as failed and the run goes on; every
--out file is rewritten after each row, so a run stopped early keeps what it measured.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import logging
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]  # the bench's modules; vitlight from this checkout

import gpu_build  # noqa: E402
import gpu_measure  # noqa: E402
import gpu_report  # noqa: E402
import torch  # noqa: E402

EXPERIMENTS = HERE.parent / "experiments"


@dataclass(frozen=True)
class Config:
    title: str
    experiment: str  # file in experiments/
    tiny: dict = field(default_factory=dict)  # overrides that shrink it to CPU seconds


CONFIGS = {  # in the order they run
    "vit_b16": Config(
        "ViT-B/16 224px",
        "vit_b16_imagenet.yaml",
        {
            "model.init_args.model_name": "vit_tiny_patch16_224",
            "data.init_args.image_size": 32,
            "model.init_args.model_kwargs": {"patch_size": 8, "depth": 2, "drop_path_rate": 0.1},
        },
    ),
    "igpt_s": Config(
        "iGPT-S 32x32 AR",
        "igpt_s_cifar10.yaml",
        {"model.init_args.preset": "igpt-tiny", "model.init_args.palette_size": 16, "data.init_args.image_size": 8},
    ),
    "resnet50": Config(
        "ResNet-50 224px",
        "resnet50_imagenet.yaml",
        {"model.init_args.model_name": "resnet18", "data.init_args.image_size": 32},
    ),
}
NEEDS_S = {"eager": 30, "compile": 60, "real": 90}  # least time left to start a row (CUDA; iGPT compiles one block)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", action="append", default=[], help="result file, .md or .json (repeatable)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="tiny models, batch 2: checks that the script works")
    p.add_argument("--only", default=",".join(CONFIGS), help=f"comma-separated subset of {', '.join(CONFIGS)}")
    p.add_argument("--modes", default="eager,compile", help="eager, compile or both (compile on a CPU needs --compile)")
    p.add_argument("--compile", action="store_true", help="run torch.compile on a CPU too (takes minutes)")
    p.add_argument("--precision", default=None, help="Trainer precision (default: bf16-mixed on CUDA, 32-true on CPU)")
    p.add_argument("--batch", default="", help="batch overrides, e.g. vit_b16=128,igpt_s=32 (default: the YAML's)")
    p.add_argument("--data_dir", action="append", default=[], help="DIR for every config, or NAME=DIR (repeatable)")
    p.add_argument("--workers", type=int, default=None, help="real-data loader workers (default: the YAML's)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 30; tiny 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5, compile +3; tiny 1)")
    p.add_argument(
        "--count_steps", type=int, default=None, help="steps whose host syncs are counted (default 3; tiny 2)"
    )
    p.add_argument("--matmul_size", type=int, default=None, help="side of the bf16 matmul (default 8192; tiny 256)")
    p.add_argument("--max_minutes", type=float, default=8.0, help="rows that would not fit are skipped")
    a = p.parse_args(argv)
    a.argv = sys.argv[1:] if argv is None else list(argv)
    a.only = [n.strip() for n in a.only.split(",") if n.strip()]
    a.modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if not a.only or any(n not in CONFIGS for n in a.only):
        p.error(
            f"--only {','.join(n for n in a.only if n not in CONFIGS) or '(none)'}: choose from {', '.join(CONFIGS)}"
        )
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
    a.data_dirs = {}
    for item in a.data_dir:
        name, _, folder = item.rpartition("=") if "=" in item else ("", "", item)
        if name and name not in CONFIGS:
            p.error(f"--data_dir {item}: NAME must be one of {', '.join(CONFIGS)}")
        if not Path(folder).expanduser().exists():
            p.error(f"--data_dir {item}: {folder} does not exist")
        a.data_dirs.update({name: folder} if name else {n: folder for n in CONFIGS if n not in a.data_dirs})
    small = a.tiny or a.device == "cpu"
    a.steps = a.steps or (2 if small else 30)
    a.warmup = a.warmup if a.warmup is not None else (1 if small else 5)
    a.count_steps = a.count_steps if a.count_steps is not None else (2 if small else 3)
    a.matmul_size = a.matmul_size or (256 if small else 8192)
    a.precision = a.precision or ("bf16-mixed" if a.device == "cuda" else "32-true")
    return a


def _error(caught: BaseException) -> str:
    lines = str(caught).strip().splitlines()
    return f"{type(caught).__name__}: {lines[0][:300] if lines else ''}"


class Run:
    """One benchmark run: the report, the time budget, and the rows in order."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args, self.device = args, torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.deadline = time.perf_counter() + args.max_minutes * 60
        settings = {k: getattr(args, k) for k in ("tiny", "precision", "steps", "warmup", "count_steps", "workers")}
        settings["float32_matmul_precision"] = torch.get_float32_matmul_precision()
        self.report = {
            "environment": gpu_report.environment(self.device, args.argv, settings),
            "ceilings": {},
            "rows": [],
            "goals": [],
        }

    def log(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def write(self) -> None:
        gpu_report.write(self.report, self.args.out)

    def ceilings(self) -> None:
        rate = gpu_measure.matmul_rate(self.device, self.args.matmul_size)
        peak = gpu_measure.datasheet_peak(self.report["environment"]["gpu"])
        self.report["ceilings"] = {
            "matmul_size": self.args.matmul_size,
            "matmul_tflops": rate / 1e12,
            "datasheet_tflops": peak / 1e12 if peak else None,
        }
        self.log(
            f"bf16 matmul {self.args.matmul_size}-cube: {rate / 1e12:.3g} TFLOP/s; datasheet {peak and peak / 1e12} "
            "TFLOP/s"
        )
        self.write()

    def overrides(self, name: str, mode: str) -> dict:
        cfg, args = CONFIGS[name], self.args
        out = dict(cfg.tiny) if args.tiny else {}
        batch = args.batch.get(name, 2 if args.tiny else None)
        if batch:
            out["data.init_args.batch_size"] = batch
        if mode == "compile":
            out["model.init_args.compile"] = True
        return out

    def config(self, name: str) -> None:
        rates = {}
        for mode in self.args.modes:
            row = self.row(name, mode, "synthetic")
            if row["status"] == "ok":
                rates[mode] = row["rate"]
        if name in self.args.data_dirs:
            # real data through the compiled step where it ran, else the eager one
            mode = "compile" if "compile" in rates else "eager"
            self.row(name, mode, "real", rates.get(mode))

    def row(self, name: str, mode: str, data: str, synthetic_rate: float | None = None) -> dict:
        cfg, args = CONFIGS[name], self.args
        row = {
            "config": name,
            "title": cfg.title,
            "experiment": cfg.experiment,
            "mode": mode,
            "data": data,
            "batch": None,
            "precision": args.precision,
            "status": "ok",
            "note": "",
        }
        self.report["rows"].append(row)
        left = self.deadline - time.perf_counter()
        if mode == "compile" and not self.cuda and not args.compile:
            row.update(status="skipped", note="torch.compile on a CPU takes minutes; --compile runs it")
        elif self.cuda and left < NEEDS_S["real" if data == "real" else mode]:
            row.update(status="skipped", note=f"--max_minutes {args.max_minutes}: {left:.0f} s left")
        else:
            try:
                self._measure(row, name, mode, data, synthetic_rate)
            except Exception as caught:  # out of memory, compile errors, missing data: recorded, the run goes on
                row.update(status="failed", note=_error(caught))
            gc.collect()
            if self.cuda:
                torch.cuda.empty_cache()
            if mode == "compile":
                torch._dynamo.reset()
        done = f"{row['rate']:.1f} images/s" if row["status"] == "ok" else f"{row['status']}: {row['note']}"
        self.log(f"{name} {mode} {data}: {done}")
        self.write()
        return row

    def _measure(self, row: dict, name: str, mode: str, data: str, synthetic_rate: float | None) -> None:
        args, device = self.args, self.device
        overrides = self.overrides(name, mode)
        if data == "real":
            overrides["data.init_args.data_dir"] = args.data_dirs[name]
            if args.workers is not None:
                overrides["data.init_args.num_workers"] = args.workers
        built = gpu_build.build([EXPERIMENTS / CONFIGS[name].experiment], overrides)
        module, datamodule = built.module, built.datamodule
        if mode == "compile" and "compile" not in inspect.signature(type(module)).parameters:
            row.update(status="skipped", note=f"{type(module).__name__} has no compile switch")
            return
        row["batch"] = datamodule.batch_size
        row["uint8_batches"] = gpu_measure.hands_over_uint8(module)
        warmup = args.warmup + (3 if mode == "compile" and self.cuda else 0)
        if data == "synthetic":
            gpu_measure.prepare_synthetic(module)
            accumulation = int(built.trainer.get("accumulate_grad_batches") or 1)
            datamodule = gpu_measure.SyntheticImages(
                datamodule,
                datamodule.batch_size,
                warmup + args.steps + args.count_steps + accumulation + 1,  # whole optimizer steps
                uint8=row["uint8_batches"],
                pin_memory=self.cuda,
            )
        else:
            datamodule.prepare_data()
            datamodule.setup("fit")
            row["loader_rate"] = gpu_measure.loader_rate(
                datamodule, args.steps, warmup=max(1, 2 * datamodule.num_workers)
            )
        row["flops_per_step"] = gpu_measure.flops_per_step(module, datamodule.batch_size)
        row["flop_convention"], row["masked_attention_share"] = gpu_measure.flop_convention(module)
        count = args.count_steps if mode == "eager" and data == "synthetic" else 0
        if mode == "compile":
            from torch._dynamo.utils import counters

            counters.clear()  # frames compiled by this row alone
        row.update(
            gpu_measure.measure_fit(
                module, datamodule, built.trainer, device, args.precision, warmup, args.steps, count
            )
        )
        if mode == "compile":
            # 0 means the switch compiled nothing (ImageGPT's steps once bypassed the compiled __call__)
            row["compiled_frames"] = int(counters["frames"]["ok"])
        if row["flops_per_step"]:
            flops = row["flops_per_step"] / (row["step_ms"] / 1e3)
            ceilings = self.report["ceilings"]
            row["tflops"] = flops / 1e12
            row["mfu_matmul"] = flops / (ceilings["matmul_tflops"] * 1e12)
            row["mfu_datasheet"] = (
                flops / (ceilings["datasheet_tflops"] * 1e12) if ceilings["datasheet_tflops"] else None
            )
        if data == "real" and synthetic_rate:
            row["real_ratio"] = row["rate"] / synthetic_rate
        if hasattr(module, "tokenize"):
            row["tokens_per_s"] = row["rate"] * datamodule.image_size**2


def main(argv: list[str] | None = None) -> None:
    args = _parse(argv)
    warnings.filterwarnings("ignore", module="lightning")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    if args.device == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32, as vitlight fit sets it on CUDA
    run = Run(args)
    run.ceilings()
    for name in (n for n in CONFIGS if n in args.only):
        run.config(name)
    run.write()
    print(gpu_report.markdown(run.report), end="")


if __name__ == "__main__":
    main()
