"""bf16 on CUDA by default, fp32 on CPU, an explicit precision always wins; tested by faking CUDA."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.conftest import smoke_fit_on_folder, write_image_folder
from vitlight.cli import main
from vitlight.precision import apply_matmul_precision, default_precision, resolve_precision


@pytest.fixture()
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    before = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(before)


def test_cpu_defaults_to_fp32():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert default_precision("auto") == "32-true"
    assert resolve_precision(None, "cpu") == "32-true"


def test_cuda_defaults_to_bf16_and_tf32(fake_cuda, monkeypatch):
    assert resolve_precision(None, "auto") == "bf16-mixed"
    assert resolve_precision(None, "gpu") == "bf16-mixed"
    assert resolve_precision(None, "cpu") == "32-true"  # asked for the CPU: fp32 there
    torch.set_float32_matmul_precision("highest")
    assert apply_matmul_precision("auto") == "high"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision(None, "cuda") == "16-mixed"  # pre-Ampere GPUs have no bf16


def test_an_explicit_precision_wins(fake_cuda):
    assert resolve_precision("32-true", "auto") == "32-true"
    assert resolve_precision("16-mixed", "cpu") == "16-mixed"


def test_summary_records_precision_and_matmul_setting(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    images = write_image_folder(tmp_path / "images", per_class=12, size=16)
    args = [
        *smoke_fit_on_folder(images),
        "--data.batch_size",
        "8",
        "--runs_dir",
        str(tmp_path / "runs"),
    ]
    assert main(args) == 0
    assert main([*args, "--trainer.precision", "bf16-mixed", "--experiment", "explicit"]) == 0
    default = json.loads(next((tmp_path / "runs" / "quickstart").glob("*/summary.json")).read_text())
    explicit = json.loads(next((tmp_path / "runs" / "explicit").glob("*/summary.json")).read_text())
    assert default["precision"] == "32-true" and explicit["precision"] == "bf16-mixed"
    assert default["float32_matmul_precision"] == torch.get_float32_matmul_precision()
    assert default["world_size"] == 1
