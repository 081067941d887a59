"""`vitlight report` on synthetic run folders: plots, table, compute axis, and the crossover on constructed cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from vitlight.analysis.report import crossover, family_of
from vitlight.cli import main

VIT = {
    "model_name": "vit_tiny_patch16_224",
    "model_kwargs": {"patch_size": 4, "embed_dim": 96, "depth": 4, "num_heads": 3},
}
CNN = {"model_name": "resnet18", "cifar_stem": True}
# ViT 10 points behind at 1,000 images, 10 ahead at 10,000: the means cross at sqrt(1e3 * 1e4) in log size
ACCURACY = {
    ("vit", 100): 0.20,
    ("vit", 1000): 0.40,
    ("vit", 10000): 0.80,
    ("cnn", 100): 0.30,
    ("cnn", 1000): 0.50,
    ("cnn", 10000): 0.70,
}


def write_run(
    root: Path,
    name: str,
    model: dict,
    train_size: int,
    seed: int,
    acc: float,
    status: str = "finished",
    dataset: str = "CIFAR10",
) -> Path:
    run = root / name
    run.mkdir(parents=True)
    summary = {
        "status": status,
        "subcommand": "fit",
        "experiment": name.split("/")[0],
        "run_id": run.name,
        "seed": seed,
        "train_size": train_size,
        "global_step": math.ceil(train_size / 32) * 2,
        "epochs": 2,
        "data": {"dataset": dataset, "num_classes": 10, "image_size": 32, "channels": 3},
        "model": {"class": "ImageClassifier", "model_name": model["model_name"], "parameters": 1000},
        "best_validation": {"val/acc": acc},
        "test": {"test/acc": acc},
        "wall_time_s": 1.0,
    }
    (run / "summary.json").write_text(json.dumps(summary))
    config = {
        "model": {"class_path": "vitlight.tasks.ImageClassifier", "init_args": model},
        "data": {"class_path": "vitlight.data.CIFAR10", "init_args": {"batch_size": 32}},
        "trainer": {},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


@pytest.fixture()
def sweep_dir(tmp_path: Path) -> Path:
    root = tmp_path / "sweeps" / "synthetic"
    for (kind, size), acc in ACCURACY.items():
        for seed, offset in ((0, -0.01), (1, 0.01)):
            write_run(
                root / "trials" / f"{kind}{size}{seed}",
                f"{kind}/run",
                VIT if kind == "vit" else CNN,
                size,
                seed,
                acc + offset,
            )
    write_run(root / "trials" / "cut", "vit/run", VIT, 100, 2, 0.99, status="interrupted")  # left out
    return root


def test_report_writes_plots_table_and_the_crossover(
    sweep_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "report"
    assert main(["report", str(sweep_dir), "--out", str(out), "--command", "vitlight sweep x.yaml"]) == 0
    for name in ("accuracy_vs_train_size.png", "accuracy_vs_compute.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = (out / "report.md").read_text()
    assert "ViT-Ti/4 (d96 L4 h3)" in text and "ResNet-18" in text
    assert (
        "| 1,000 | 0.400 ± 0.014 (2) | 0.500 ± 0.014 (2) |" in text
        or "| 1,000 | 0.500 ± 0.014 (2) | 0.400 ± 0.014 (2) |" in text
    )
    assert "overtakes" in text and "3,162" in text  # sqrt(1000 * 10000)
    report = json.loads((out / "report.json").read_text())
    assert report["crossover"]["status"] == "crosses"
    assert report["crossover"]["size"] == pytest.approx(math.sqrt(1000 * 10000), rel=1e-6)
    assert len(report["runs"]) == 12  # the interrupted run is left out
    vit_run = next(r for r in report["runs"] if r["kind"] == "vit" and r["train_size"] == 1000)
    cnn_run = next(r for r in report["runs"] if r["kind"] == "cnn" and r["train_size"] == 1000)
    assert vit_run["images_seen"] == 2000 and vit_run["flops_per_image"] > 0
    assert (
        cnn_run["flops_per_image"] > vit_run["flops_per_image"]
    )  # ResNet-18 with the CIFAR stem vs a 0.5M-parameter ViT
    assert vit_run["train_flops"] == vit_run["flops_per_image"] * 2000
    assert list(out.glob("wandb/offline-run-*/run-*.wandb")), "the report's plots and table go to an offline W&B run"
    assert "overtakes" in capsys.readouterr().out


def test_crossover_cases():
    behind = crossover("ViT", {1: 0.1, 10: 0.2}, "CNN", {1: 0.3, 10: 0.4})
    assert (
        behind.status == "behind"
        and behind.size is None
        and "does not overtake" in behind.text
        and "-20.0 points" in behind.text
    )
    ahead = crossover("ViT", {1: 0.5, 10: 0.6}, "CNN", {1: 0.3, 10: 0.4})
    assert ahead.status == "ahead" and "every size" in ahead.text
    # ahead briefly at 10, behind at 100, ahead for good from 1,000: the crossing between 100 and 1,000 counts
    late = crossover("ViT", {1: 0.1, 10: 0.5, 100: 0.3, 1000: 0.9}, "CNN", {1: 0.2, 10: 0.4, 100: 0.5, 1000: 0.7})
    assert late.status == "crosses" and late.size == pytest.approx(10**2.5)
    tie = crossover("ViT", {1: 0.2, 10: 0.5}, "CNN", {1: 0.2, 10: 0.4})
    assert tie.status == "crosses" and tie.size == pytest.approx(1.0)


def test_family_names():
    assert family_of("vit_small_patch16_224", {"patch_size": 4}) == ("ViT-S/4", "vit")
    assert family_of("vit_base_patch16_224", {}) == ("ViT-B/16", "vit")
    assert family_of("resnetv2_50x1_bit", {}) == ("BiT-R50x1", "cnn")
    assert family_of("resnet18", None) == ("ResNet-18", "cnn")


def test_transfer_runs_are_plotted_against_the_pretraining_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # a pipeline's fine-tune and linear-probe runs, from pretraining runs on 100 and 1,000 images
    monkeypatch.setenv("WANDB_MODE", "offline")
    root = tmp_path / "sweeps" / "transfer"
    for size, acc in ((100, 0.3), (1000, 0.6)):
        for seed in (0, 1):
            pretrain = write_run(root / f"t{size}{seed}", "pretrain/run", VIT, size, seed, 0.2)
            checkpoint = {"checkpoint_path": str(pretrain / "checkpoints" / "best-000.ckpt")}
            write_run(
                root / f"t{size}{seed}",
                "finetune/run",
                {**VIT, **checkpoint},
                500,
                seed,
                acc + seed / 100,
                dataset="CIFAR100",
            )
            write_run(
                root / f"t{size}{seed}",
                "probe/run",
                {**VIT, **checkpoint, "freeze_backbone": True},
                500,
                seed,
                acc - 0.1,
                dataset="CIFAR100",
            )
    moved = tmp_path / "copied" / "transfer"  # checkpoint paths point at the old place: runs are found by folder name
    moved.parent.mkdir()
    root.rename(moved)
    out = tmp_path / "report"
    assert main(["report", str(moved), "--out", str(out)]) == 0
    text = (out / "report.md").read_text()
    fine_tuned = "ViT-Ti/4 (d96 L4 h3) fine-tuned, pretrained on CIFAR10"
    probed = "ViT-Ti/4 (d96 L4 h3) linear probe, pretrained on CIFAR10"
    assert f"| pretraining images | {fine_tuned} | {probed} |" in text
    assert (
        "| 100 | 0.305 ± 0.007 (2) | 0.200 ± 0.000 (2) |" in text
    )  # seeds pooled per pretraining size, not per fine-tune size
    assert "| 1,000 | 0.605 ± 0.007 (2) | 0.500 ± 0.000 (2) |" in text
    report = json.loads((out / "report.json").read_text())
    assert len(report["runs"]) == 8  # the pretraining runs (CIFAR-10) are listed, not plotted
    assert "Runs on other datasets (not plotted): pretrain (CIFAR10)" in text
    run = next(r for r in report["runs"] if r["family"] == fine_tuned and r["pretrain_size"] == 1000)
    pretrain_flops = run["flops_per_image"] * 1000 * 2  # the pretraining run: 2 epochs of 1,000 images, same backbone
    assert run["pretrain_flops"] == pytest.approx(pretrain_flops)
    assert run["train_flops"] == pytest.approx(
        run["flops_per_image"] * 500 * 2 + pretrain_flops
    )  # its own + its pretraining
    probe = next(r for r in report["runs"] if r["family"] == probed and r["pretrain_size"] == 1000)
    # a frozen backbone gets no backward pass: forward + the head's gradients, well under the fine-tune's step
    assert 0.3 * run["flops_per_image"] < probe["flops_per_image"] < 0.5 * run["flops_per_image"]


def test_images_seen_counts_every_process():
    from vitlight.analysis.report import images_seen

    config = {"data": {"init_args": {"batch_size": 8}}, "trainer": {"accumulate_grad_batches": 2}}
    one = {"global_step": 10, "train_size": 10_000, "epochs": 1}
    assert images_seen(one, config) == 160  # a summary without world_size: one process
    assert images_seen({**one, "world_size": 4}, config) == 640
    assert images_seen({**one, "world_size": 4, "train_size": 100}, config) == 100  # at most one pass per epoch


def write_pipeline(root: Path, name: str, preset: str, parameters: int, probe_acc: float, steps: int = 100) -> Path:
    """A finished `vitlight pipeline` run folder and its pretraining stage's run folder, as the pipeline writes them."""
    pretrain = root / name / "igpt_tiny_quickstart" / "20260101-000000-aaaaaa"
    pretrain.mkdir(parents=True)
    (pretrain / "summary.json").write_text(
        json.dumps(
            {
                "status": "finished",
                "subcommand": "fit",
                "train_size": 4000,
                "global_step": steps,
                "epochs": 8,
                "data": {"dataset": "EmbeddedDigits", "num_classes": 10, "image_size": 14, "channels": 1},
                "model": {"class": "PixelPretrainer", "model_name": preset, "parameters": parameters},
            }
        )
    )
    (pretrain / "config.yaml").write_text(
        yaml.safe_dump(
            {
                "model": {
                    "class_path": "vitlight.tasks.PixelPretrainer",
                    "init_args": {"preset": preset, "palette_size": 16},
                },
                "data": {"class_path": "vitlight.data.EmbeddedDigits", "init_args": {"batch_size": 64}},
                "trainer": {},
            }
        )
    )
    pipeline = root / name / "pipeline_igpt_tiny_quickstart" / "20260101-000001-bbbbbb"
    pipeline.mkdir(parents=True)
    (pipeline / "summary.json").write_text(
        json.dumps(
            {
                "status": "finished",
                "subcommand": "pipeline",
                "seed": 0,
                "train_size": 4000,
                "model": {"class": "PixelPretrainer", "model_name": preset, "parameters": parameters},
                "metrics": {"probe/test_acc": probe_acc, "pretrain/test/loss": 0.7},
                "stages": {"pretrain": {"run_dir": str(pretrain), "status": "finished"}},
            }
        )
    )
    return pipeline


def test_report_plots_a_pipeline_sweep_against_parameters_and_compute(tmp_path: Path, capsys):
    root = tmp_path / "sweeps" / "igpt_scaling_mini" / "trials"
    write_pipeline(root, "0000", "igpt-tiny", 210_000, 0.899)
    write_pipeline(root, "0001", "igpt-mini", 1_220_000, 0.905)
    out = tmp_path / "report"
    assert main(["report", str(root.parent), "--out", str(out)]) == 0
    for name in ("probe_vs_parameters.png", "probe_vs_compute.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "report.json").read_text())
    assert report["metric"] == "probe/test_acc"
    by_model = {p["model"]: p for p in report["pipelines"]}
    tiny, mini = by_model["igpt-tiny"], by_model["igpt-mini"]
    assert tiny["images_seen"] == mini["images_seen"] == 100 * 64  # steps x batch, below epochs x train size
    assert 0 < tiny["flops_per_image"] < mini["flops_per_image"]  # counted on meta: the bigger model costs more
    assert mini["compute"] == pytest.approx(6400 * mini["flops_per_image"])
    text = (out / "report.md").read_text()
    assert "| igpt-tiny | 210000 | 4000 |" in text and "0.8990" in text and "0.9050" in text
