"""bench/gpu.py runs on a CPU with tiny shapes through vitlight's own modules, data modules and a
Lightning Trainer, and writes its documented fields (not a speed check)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.data.conftest import cifar_batches

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "gpu.py"
NOT_MEASURED = "not measured on a GPU yet"
# The GPU machine lacks these; the bench must run without them (import blocked, as if not installed).
MISSING_THERE = ("wandb", "datasets", "jsonargparse", "mlxtend", "optuna", "torchdata")


# As if not installed: imports fail and the packages' metadata is not found (Lightning decides
# whether to import jsonargparse from the metadata).
NOT_INSTALLED = """import importlib.metadata as md, sys
def guard(real):
    def check(name, *args, **kwargs):
        if name.lower().replace('_', '-') in {block!r}:
            raise md.PackageNotFoundError(name)
        return real(name, *args, **kwargs)
    return check
md.version, md.distribution = guard(md.version), guard(md.distribution)
for name in {block!r}: sys.modules[name] = None
"""


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _run(args: list[str], cwd: Path, block: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    prelude = NOT_INSTALLED.format(block=block)
    argv = [str(BENCH), *args]
    code = f"{prelude}import runpy; sys.argv = {argv!r}; runpy.run_path({str(BENCH)!r}, run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600, cwd=cwd, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_tiny_cpu_run_without_the_gpu_machines_missing_packages_writes_every_field(tmp_path):
    cifar = cifar_batches(tmp_path / "data", per_batch=20)
    proc = _run(
        [
            "--device",
            "cpu",
            "--tiny",
            "--data_dir",
            f"igpt_s={cifar}",
            "--workers",
            "0",
            "--out",
            "r.json",
            "--out",
            "r.md",
        ],
        tmp_path,
        block=MISSING_THERE,
    )
    report = json.loads((tmp_path / "r.json").read_text())
    env = report["environment"]
    assert (
        env["device"] == "cpu"
        and env["tiny"]
        and env["precision"] == "32-true"
        and env["command"].startswith("python ")
    )
    assert report["ceilings"]["matmul_tflops"] > 0 and report["ceilings"]["datasheet_tflops"] is None
    rows = {(r["config"], r["mode"], r["data"]): r for r in report["rows"]}
    expected = {
        (name, mode, "synthetic") for name in ("vit_b16", "igpt_s", "resnet50") for mode in ("eager", "compile")
    }
    assert set(rows) == expected | {("igpt_s", "eager", "real")}
    for name in ("vit_b16", "igpt_s", "resnet50"):
        row = rows[name, "eager", "synthetic"]
        assert row["status"] == "ok", row
        assert row["batch"] == 2 and row["step_ms"] > 0 and row["rate"] > 0 and row["flops_per_step"] > 0
        assert row["tflops"] > 0 and row["mfu_matmul"] > 0 and row["mfu_datasheet"] is None
        assert row["syncs_per_step"] == sum(row["syncs_by_caller"].values()) / 2  # 2 counted steps
        assert rows[name, "compile", "synthetic"]["status"] == "skipped"
        # batches, not optimizer steps: ViT-B's YAML accumulates 8 batches per step (it ran 8x the batches)
        timed = 1 + 2 + 2  # warm-up, timed, counted (tiny)
        accumulation = 8 if name == "vit_b16" else 1
        assert timed <= row["batches_run"] < timed + accumulation, row
        assert row["optimizer_steps"] == -(-timed // accumulation)
    assert rows["igpt_s", "eager", "synthetic"]["masked_attention_share"] > 0
    assert rows["vit_b16", "eager", "synthetic"]["masked_attention_share"] is None
    assert rows["igpt_s", "eager", "synthetic"]["tokens_per_s"] == pytest.approx(
        rows["igpt_s", "eager", "synthetic"]["rate"] * 64
    )
    real = rows["igpt_s", "eager", "real"]
    assert real["status"] == "ok", real
    assert real["loader_rate"] > 0 and real["rate"] > 0
    assert real["real_ratio"] == pytest.approx(real["rate"] / rows["igpt_s", "eager", "synthetic"]["rate"])
    assert "syncs_per_step" not in real  # counted on synthetic eager rows only
    assert [g["status"] for g in report["goals"]] == [NOT_MEASURED] * 3
    markdown = (tmp_path / "r.md").read_text()
    assert "| model | mode | data | batch | precision | step ms | images/s | loader alone images/s |" in markdown
    assert f"| {NOT_MEASURED} |" in markdown and "| host syncs in vitlight's code |" in markdown
    assert "the masked half of causal attention included" in markdown
    assert markdown in proc.stdout


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--only", "vit_b16,alexnet"], "--only alexnet: choose from vit_b16, igpt_s, resnet50"),
        (["--modes", "jit"], "--modes jit: choose from eager, compile"),
        (["--out", "r.csv"], "--out r.csv: each file must end in .md or .json"),
        (["--batch", "vit_b16=x"], "--batch vit_b16=x: write name=size pairs"),
        (["--data_dir", "alexnet=."], "--data_dir alexnet=.: NAME must be one of vit_b16, igpt_s, resnet50"),
        (["--data_dir", "no/such/folder"], "--data_dir no/such/folder: no/such/folder does not exist"),
    ],
)
def test_bad_arguments_end_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _bench().main(["--device", "cpu", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_data_dir_for_all_configs_and_for_one():
    bench = _bench()
    args = bench._parse(["--device", "cpu", "--data_dir", ".", "--data_dir", "igpt_s=/"])
    assert args.data_dirs == {"vit_b16": ".", "igpt_s": "/", "resnet50": "."}


@pytest.mark.parametrize(
    "name, tflops",
    [
        ("NVIDIA H200", 989),
        ("NVIDIA H100 80GB HBM3", 989),
        ("NVIDIA H100 PCIe", 756),
        ("NVIDIA A100-SXM4-80GB", 312),
        ("NVIDIA L4", 121),
        ("NVIDIA A10G", None),
        ("NVIDIA GeForce RTX 3090", None),
        (None, None),
    ],
)
def test_datasheet_peaks_match_the_device_name(name, tflops):
    _bench()  # puts bench/ on the path
    import gpu_measure

    peak = gpu_measure.datasheet_peak(name)
    assert (peak and peak / 1e12) == tflops


def _report(device: str, vit_mfu: float, ratio: float) -> dict:
    base = {"mode": "compile", "batch": 256, "precision": "bf16-mixed", "note": ""}
    rows = [
        {
            **base,
            "config": "vit_b16",
            "title": "ViT-B/16 224px",
            "data": "synthetic",
            "status": "ok",
            "rate": 1000.0,
            "mfu_matmul": vit_mfu,
            "mfu_datasheet": vit_mfu * 0.8,
            "syncs_by_caller": {"item at reliability.py:10": 3},
        },
        {
            **base,
            "config": "igpt_s",
            "title": "iGPT-S",
            "data": "synthetic",
            "status": "failed",
            "note": "OutOfMemoryError: CUDA out of memory",
        },
        {
            **base,
            "config": "vit_b16",
            "title": "ViT-B/16 224px",
            "data": "real",
            "status": "ok",
            "rate": 900.0,
            "real_ratio": ratio,
        },
    ]
    env = {
        "date": "today",
        "gpu": "NVIDIA H200" if device == "cuda" else None,
        "cpus": 16,
        "python": "3.12",
        "torch": "2.11",
        "cuda": "13.0",
        "timm": "1",
        "lightning": "2",
        "vitlight_commit": "abc",
        "command": "python bench/gpu.py",
        "device": device,
        "tiny": False,
    }
    return {
        "environment": env,
        "ceilings": {"matmul_size": 8192, "matmul_tflops": 790.0, "datasheet_tflops": 989.0},
        "rows": rows,
    }


def test_goals_are_met_missed_or_not_measured_and_failures_show_in_the_table():
    _bench()
    import gpu_report

    report = _report("cuda", vit_mfu=0.42, ratio=0.95)
    goals = gpu_report.goals(report)
    assert [(g["status"], g["value"]) for g in goals] == [
        ("missed", 0.42),
        ("not measured: failed OutOfMemoryError: CUDA out of memory", None),
        ("met", 0.95),
    ]
    report["goals"] = goals
    markdown = gpu_report.markdown(report)
    assert (
        "| iGPT-S | compile | synthetic | 256 | bf16-mixed | - | - | - | - | - | - | - | - | - | failed: "
        "OutOfMemoryError: CUDA out of memory |" in markdown
    )
    assert "| vit_b16 MFU (measured matmul ceiling), torch.compile | 0.5 | 0.420 | missed |" in markdown
    assert "| ViT-B/16 224px | compile | item at reliability.py:10 | 3 |" in markdown
    assert "datasheet dense bf16 989 TFLOP/s" in markdown
    assert [g["status"] for g in gpu_report.goals(_report("cpu", 0.9, 1.0))] == [NOT_MEASURED] * 3


@pytest.mark.gpu
def test_gpu_run_measures_memory_mfu_and_syncs(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _run(
        ["--only", "vit_b16", "--modes", "eager", "--steps", "3", "--matmul_size", "4096", "--out", "r.json"], tmp_path
    )
    row = json.loads((tmp_path / "r.json").read_text())["rows"][0]
    assert row["status"] == "ok", row
    assert row["precision"] == "bf16-mixed" and row["peak_gib"] > 0 and 0 < row["mfu_matmul"] < 1
    assert "syncs_per_step" in row


def _tiny_classifier():
    from vitlight.tasks import ImageClassifier

    return ImageClassifier(
        model_name="vit_tiny_patch16_224",
        model_kwargs={"patch_size": 8, "depth": 1, "embed_dim": 32, "num_heads": 2},
        num_classes=4,
        image_size=16,
        lr_scheduler=None,
    )


def test_host_syncs_are_counted_per_step_in_vitlights_code_only(tmp_path):
    _bench()
    import gpu_measure

    import vitlight
    from vitlight.data.device import DeviceFinish
    from vitlight.data.transforms import TransformSettings

    class Like:  # what a vitlight data module tells the task: shape, classes, and how to finish uint8 on the device
        num_classes, image_size, channels = 4, 16, 3
        transform_settings = TransformSettings(image_size=16, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)

        def device_finish(self, train: bool) -> DeviceFinish:
            return DeviceFinish(self.transform_settings, train)

    def fit(module):
        data = gpu_measure.SyntheticImages(Like(), batch_size=2, batches=8, uint8=gpu_measure.hands_over_uint8(module))
        return gpu_measure.measure_fit(module, data, {}, torch.device("cpu"), "32-true", warmup=1, steps=2, count=3)

    baseline = fit(_tiny_classifier())
    # one .item() per step from a function whose code lives in vitlight's folder (counted), one from here (not)
    source = "def read(loss):\n    return loss.item()\n"
    namespace: dict = {}
    exec(compile(source, str(Path(vitlight.__file__).parent / "injected.py"), "exec"), namespace)
    module = _tiny_classifier()
    step = module.training_step

    def training_step(*args):
        loss = step(*args)
        namespace["read"](loss.detach())
        loss.detach().item()
        return loss

    module.training_step = training_step
    measured = fit(module)
    assert measured["syncs_per_step"] == pytest.approx(baseline["syncs_per_step"] + 1)
    assert measured["syncs_by_caller"]["item at injected.py:2"] == 3
    assert measured["step_ms"] > 0 and measured["rate"] > 0 and "peak_gib" not in measured
