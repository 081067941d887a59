"""`vitlight sweep FILE --estimate`: counted FLOPs x images, hours from peak x MFU, and every sweep
file's header line recomputed (so a header cannot drift from the file it describes)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import EXPERIMENTS, ROOT
from vitlight.analysis.flops import count_training_flops
from vitlight.errors import ConfigError
from vitlight.sweeps.estimate import DEVICES, Rate, device_rate, estimate, header_line, report_lines
from vitlight.sweeps.spec import load_spec
from vitlight.tasks.backbones import create_backbone

SWEEPS = sorted((ROOT / "sweeps").glob("*.yaml"))
HEADER = re.compile(r"^# Estimate \(vitlight sweep --estimate\):.*$", re.M)


def digits_sweep(tmp_path: Path, sizes: list, extra: list[str]) -> Path:
    path = tmp_path / "digits.yaml"
    command = [
        "${env}",
        "${interpreter}",
        "-m",
        "vitlight",
        "fit",
        "--config",
        str(EXPERIMENTS / "quickstart.yaml"),
        "${args}",
        "--data.batch_size=32",
        *extra,
    ]
    path.write_text(
        yaml.safe_dump(
            {
                "name": "digits",
                "method": "grid",
                "metric": {"name": "test/acc", "goal": "maximize"},
                "parameters": {"data.train_size": {"values": sizes}, "seed_everything": {"values": [0, 1, 2]}},
                "command": command,
            }
        )
    )
    return path


def quickstart_step_flops() -> tuple[int, int]:
    kwargs = {"patch_size": 7, "embed_dim": 128, "depth": 6, "num_heads": 4}
    count = count_training_flops(lambda: create_backbone("vit_tiny_patch16_224", 10, 28, 1, kwargs), (2, 1, 28, 28))
    return count.train_step // 2, count.forward // 2


def test_trials_images_and_flops_follow_epochs_steps_and_subset_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    # 100 images at batch 32: 3 full batches per epoch (the short one dropped), 5 epochs = 15 steps;
    # 3,920 images: 122 batches per epoch, capped by max_steps=40. Seeds cost the same: counted once, x3.
    result = estimate(
        load_spec(digits_sweep(tmp_path, [100, 1.0], ["--trainer.max_epochs=5", "--trainer.max_steps=40"]))
    )
    train_step, forward = quickstart_step_flops()
    assert result.trials == 6 and [c.trials for c in result.costs] == [3, 3]
    small, full = (c.stages[0] for c in result.costs)
    assert (small.train_images, full.train_images) == (15 * 32, 40 * 32)
    assert small.train_flops == 15 * 32 * train_step and full.train_flops == 40 * 32 * train_step
    # evaluation: the 200 carved validation images (val_fraction 0.05) every 3rd epoch, once in 5 epochs (the
    # 40-step run ends inside its first epoch: no validation), and the 1,000 test images once
    assert small.eval_flops == forward * (200 + 1000) and full.eval_flops == forward * 1000
    assert result.train_flops == 3 * (small.train_flops + full.train_flops)
    rate = Rate("chip", 1e12, 0.5, "test")
    assert result.hours(rate) == pytest.approx(result.flops / 0.5e12 / 3600)
    line = header_line(result, rate)
    assert line.startswith("# Estimate (vitlight sweep --estimate): 6 trials, ") and "on chip at 50% MFU" in line
    assert any("data.train_size=100 x3" in shown for shown in report_lines(result, rate))


def test_device_rates_mfu_and_bench_file(tmp_path: Path):
    assert device_rate("a100", 0.5).flops_per_s == DEVICES["a100"][1] * 0.5
    assert device_rate("h200").mfu == 0.3
    with pytest.raises(ConfigError, match="--device 'tpu' is not known; valid: h200, a100, cpu"):
        device_rate("tpu")
    with pytest.raises(ConfigError, match="--mfu must be in"):
        device_rate("h200", 1.5)
    bench = tmp_path / "h200.json"
    bench.write_text(
        json.dumps(
            {
                "environment": {"gpu": "NVIDIA H200"},
                "ceilings": {"datasheet_tflops": 989.0, "matmul_tflops": 700.0},
                "rows": [
                    {"status": "ok", "mfu_datasheet": 0.1},
                    {"status": "ok", "mfu_datasheet": 0.3},
                    {"status": "ok", "mfu_datasheet": 0.2},
                    {"status": "failed"},
                ],
            }
        )
    )
    measured = device_rate("a100", bench=bench)  # the file names its chip and its measured MFU
    assert measured.device == "one NVIDIA H200" and measured.peak == 989e12 and measured.mfu == pytest.approx(0.2)
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ConfigError, match="is not a bench/gpu.py JSON result"):
        device_rate("h200", bench=tmp_path / "bad.json")


@pytest.mark.slow
@pytest.mark.parametrize("path", SWEEPS, ids=[p.stem for p in SWEEPS])
def test_each_sweep_file_header_states_its_estimate(path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    stated = HEADER.findall(path.read_text())
    assert len(stated) == 1, (
        f"{path.name} needs one line: {header_line(estimate(load_spec(path)), device_rate('h200'))}"
    )
    assert stated[0] == header_line(estimate(load_spec(path)), device_rate("h200"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["scaling_data", "scaling_model", "pretrain_transfer"])
def test_full_studies_fit_three_h200_hours_and_first_looks_fifteen_minutes(name: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(ROOT)
    rate = device_rate("h200")
    assert estimate(load_spec(ROOT / "sweeps" / f"{name}.yaml")).hours(rate) <= 3
    assert estimate(load_spec(ROOT / "sweeps" / f"{name}_gpu15.yaml")).hours(rate) <= 0.25
