"""bench/checkpoint_share.py: the share arithmetic, and a smoke run that prints both policies and the
ratio last (a tiny model; not a speed check)."""

import importlib.util
import re
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "checkpoint_share.py"


def _load():
    spec = importlib.util.spec_from_file_location("checkpoint_share", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_shares() -> None:
    bench = _load()
    # ResNet-50 on an H100 (issue 24): ~0.5 s per save every 200 x 45 ms = 9 s -> 5.3 %
    assert bench.share_every_steps(0.5, 0.045, 200) == pytest.approx(0.5 / 9.5)
    assert bench.share_every_minutes(0.5, 0.045, 10) == pytest.approx(0.5 / 600.5)
    assert bench.share_every_minutes(0.5, 900.0, 10) == pytest.approx(0.5 / 900.5)  # a step longer than the interval


def test_checkpoint_bench_prints_both_policies_and_ratio_last(tmp_path: Path, capsys) -> None:
    bench = _load()
    assert bench.main(["--model", "test_resnet", "--batch_size", "1", "--repeats", "1", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"one save \(fsync'd\) \d+\.\d+ s, one CPU step at batch 1", out)
    assert re.search(r"^a GPU \(50 ms\) +\d+\.\d+% +\d+\.\d+% +\d+\.\d+$", out, flags=re.MULTILINE)
    assert re.fullmatch(r"RATIO \d+\.\d", out.strip().splitlines()[-1])
    assert list(tmp_path.iterdir()) == []  # the checkpoints went into a temporary folder, removed


def test_checkpoint_bench_keeps_its_figures_for_the_gpu_check(tmp_path: Path) -> None:
    import json

    bench = _load()
    out = tmp_path / "share.json"
    argv = ["--model", "test_resnet", "--batch_size", "1", "--repeats", "1", "--dir", str(tmp_path), "--out", str(out)]
    assert bench.main(argv) == 0
    record = json.loads(out.read_text())
    assert record["device"] == "cpu" and record["save_s"] > 0 and record["checkpoint_bytes"] > 0
    cpu, gpu = record["shares"]
    assert cpu["share_every_steps"] == pytest.approx(bench.share_every_steps(record["save_s"], cpu["step_s"], 200))
    assert gpu["step_s"] == 0.05 and gpu["share_every_minutes"] < gpu["share_every_steps"]
