"""bench/loader_224.py writes its photos, makes the shrunk copy and prints both paths and the ratios
(a smoke run: a few images, one round; not a speed check)."""

import importlib.util
import re
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "loader_224.py"


def _load():
    spec = importlib.util.spec_from_file_location("loader_224", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_loader_bench_prints_both_paths_and_ratios(tmp_path: Path, capsys) -> None:
    bench = _load()
    assert bench.main(["--images", "4", "--rounds", "1", "--batch_size", "2", "--dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    sizes = re.search(r"of 500x375, (\d+) KB each; shrunk copy \(short side 256\): (\d+) KB each", out)
    assert sizes and int(sizes.group(1)) > 40 and int(sizes.group(2)) < int(sizes.group(1))  # textured, smaller
    ratios = re.findall(r"^RATIO (\w+) (\d+\.\d+)$", out, flags=re.MULTILINE)
    assert [name for name, _ in ratios] == ["resnet50", "deit"] and all(float(r) > 0 for _, r in ratios)
    assert out.strip().splitlines()[-1].startswith("RATIO deit")


def test_worker_mode_measures_the_training_loader_with_each_worker_count(tmp_path: Path) -> None:
    import json

    bench = _load()
    out = tmp_path / "loader.json"
    argv = ["--workers", "0,1", "--images", "6", "--seconds", "0.3", "--batch_size", "2", "--dir", str(tmp_path)]
    assert bench.main([*argv, "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["images_per_s"]) == {"0", "1"} and all(v > 0 for v in record["images_per_s"].values())
    assert record["short_side"] == 256 and record["cores"] >= 1
