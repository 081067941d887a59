"""bench/gpu.py runs on a CPU with tiny shapes and writes its documented fields (not a speed check)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench" / "gpu.py"
NOT_MEASURED = "not measured on a GPU yet"
# The GPU machine lacks these; the bench must run without them (import blocked, as if not installed).
MISSING_THERE = ("wandb", "datasets", "jsonargparse", "mlxtend", "optuna", "torchdata")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _run(args: list[str], tmp_path: Path, prelude: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    code = f"{prelude}import runpy, sys; sys.argv = {[str(BENCH), *args]!r}; runpy.run_path({str(BENCH)!r}, run_name='__main__')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240, cwd=tmp_path, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc


def test_tiny_cpu_run_writes_every_field_to_json_markdown_and_stdout(tmp_path):
    proc = _run(["--device", "cpu", "--tiny", "--profile", "always", "--out", "r.json", "--out", "r.md"], tmp_path)
    report = json.loads((tmp_path / "r.json").read_text())
    env = report["environment"]
    assert env["device"] == "cpu" and env["tiny"] and env["command"].startswith("python ") and env["date"]
    assert report["matmul"]["tflops"] > 0 and report["matmul"]["size"] == 256
    steps = {(r["config"], r["mode"]): r for r in report["steps"]}
    assert set(steps) == {(name, mode) for name in ("vit_b16", "vit_s16", "resnet50", "igpt_s") for mode in ("eager", "compile")}
    for name in ("vit_b16", "vit_s16", "resnet50", "igpt_s"):
        row = steps[name, "eager"]
        assert row["status"] == "ok", row
        assert row["step_ms"] > 0 and row["step_ms_loss_check"] > 0 and row["rate"] > 0 and row["flops_per_step"] > 0 and 0 < row["mfu"] and row["tflops"] > 0
        assert row["unit"] == ("tokens/s" if name == "igpt_s" else "images/s")
        assert row["profile"]["shares"] and row["profile"]["top"] and row["diagnosis"]
        assert steps[name, "compile"]["status"] == "skipped"
    pipelines = {r["pipeline"]: r for r in report["real_data"]}
    assert "cache + GPU augmentation" in pipelines and "no --data_dir given" in report["real_data_origin"]
    for row in pipelines.values():
        assert row["status"] == "ok", row
        assert row["rate"] > 0 and row["ratio"] > 0 and row["loader_only_rate"] > 0 and 0 <= row["data_wait_fraction"] <= 1
    assert [g["status"] for g in report["goals"]] == [NOT_MEASURED] * 3
    markdown = (tmp_path / "r.md").read_text()
    assert "| model | mode | batch | step ms (with loss check) | throughput | GFLOP/step | TFLOP/s | MFU | peak GiB | status |" in markdown
    assert "| ViT-B/16 step fed by |" in markdown and f"| {NOT_MEASURED} |" in markdown
    assert markdown in proc.stdout


def test_runs_without_the_packages_the_gpu_machine_lacks(tmp_path):
    # vitlight.data is blocked too, as where its torchdata import fails: a plain memmap cache stands in
    block = f"import sys\nfor name in {(*MISSING_THERE, 'vitlight.data')!r}: sys.modules[name] = None\n"
    _run(["--device", "cpu", "--tiny", "--only", "vit_b16,real_data", "--modes", "eager", "--out", "r.json"], tmp_path, block)
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["status"] for r in report["steps"]] == ["ok"]
    assert report["real_data"][0]["status"] == "ok"
    assert "uint8 memmap" in report["real_data_origin"]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--only", "vit_b16,alexnet"], "--only alexnet: choose from vit_b16, igpt_s, vit_s16, resnet50, real_data"),
        (["--only", "real_data"], "--only real_data needs vit_b16 too"),
        (["--modes", "jit"], "--modes jit: choose from eager, compile"),
        (["--out", "r.csv"], "--out r.csv: each file must end in .md or .json"),
        (["--batch", "vit_b16=x"], "--batch vit_b16=x: write name=size pairs"),
    ],
)
def test_bad_arguments_end_in_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _bench().main(["--device", "cpu", *argv])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_gpu_augmentation_is_exact_for_the_identity_and_the_flip():
    bench = _bench()
    images = torch.randint(0, 256, (3, 8, 8, 3), dtype=torch.uint8)
    expected = images.permute(0, 3, 1, 2).float() / 255
    zero, one, half, quarter = (torch.full((1, 3, 1, 1), v) for v in (0.0, 1.0, 0.5, 0.25))
    theta = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]).repeat(3, 1, 1)
    assert torch.allclose(bench.gpu_augment(images, theta, 8, zero, one), expected, atol=1e-6)
    theta[:, 0, 0] = -1
    assert torch.allclose(bench.gpu_augment(images, theta, 8, zero, one), expected.flip(-1), atol=1e-6)
    out = bench.gpu_augment(images, bench.crop_params(3, torch.device("cpu")), 16, half, quarter)
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.float32 and out.abs().max() <= 2.0 + 1e-5


def test_crops_stay_inside_the_image_and_half_are_flipped():
    theta = _bench().crop_params(4000, torch.device("cpu"), scale_min=0.08)
    width, height = theta[:, 0, 0].abs(), theta[:, 1, 1]
    assert width.max() <= 1 and height.max() <= 1 and width.min() > 0.2 and height.min() > 0.2
    assert (theta[:, 0, 2].abs() <= 1 - width + 1e-6).all() and (theta[:, 1, 2].abs() <= 1 - height + 1e-6).all()
    assert 0.45 < (theta[:, 0, 0] < 0).float().mean() < 0.55


def _report(device: str, vit_mfu: float, ratio: float) -> dict:
    steps = [{"config": "vit_b16", "model": "ViT-B/16 224px", "mode": "compile", "batch": 256, "unit": "images/s", "status": "ok",
              "note": "", "rate": 1000.0, "mfu": vit_mfu, "diagnosis": "GPU idle 30%"},
             {"config": "igpt_s", "model": "iGPT-S", "mode": "compile", "batch": 64, "unit": "tokens/s", "status": "failed",
              "note": "OutOfMemoryError: CUDA out of memory"}]
    real = [{"pipeline": "cache + GPU augmentation", "mode": "compile", "batch": 256, "workers": 8, "status": "ok", "note": "",
             "rate": 900.0, "synthetic_rate": 1000.0, "ratio": ratio, "loader_only_rate": 5000.0, "data_wait_fraction": 0.01}]
    env = {"date": "today", "gpu": "GPU" if device == "cuda" else None, "cpus": 16, "python": "3.12", "torch": "2.11",
           "cuda": "13.0", "timm": "1", "lightning": "2", "vitlight_commit": "abc", "command": "python bench/gpu.py",
           "device": device, "tiny": False}
    return {"environment": env, "matmul": {"size": 8192, "tflops": 790.0}, "steps": steps, "real_data": real}


def test_goals_are_met_missed_or_not_measured_and_failures_show_in_the_table():
    bench = _bench()
    report = _report("cuda", vit_mfu=0.42, ratio=0.95)
    goals = bench.goals(report)
    assert [(g["status"], g["value"]) for g in goals] == [
        ("missed", 0.42), ("not measured: failed OutOfMemoryError: CUDA out of memory", None), ("met", 0.95)]
    assert goals[0]["note"] == "GPU idle 30%"
    report["goals"] = goals
    markdown = bench.markdown(report)
    assert "| iGPT-S | compile | 64 | - | - | - | - | - | - | failed: OutOfMemoryError: CUDA out of memory |" in markdown
    assert "| ViT-B/16 224px MFU with torch.compile | 0.5 | 0.420 | missed | GPU idle 30% |" in markdown
    assert [g["status"] for g in bench.goals(_report("cpu", 0.9, 1.0))] == [NOT_MEASURED] * 3


@pytest.mark.gpu
def test_gpu_run_measures_memory_and_real_data(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    _run(["--only", "vit_b16,real_data", "--modes", "eager", "--steps", "3", "--rounds", "1", "--out", "r.json"], tmp_path)
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["steps"][0]["status"] == "ok" and report["steps"][0]["peak_gib"] > 0
    assert report["real_data"][0]["status"] == "ok" and report["real_data"][0]["augment_ms"] > 0
