"""`vitlight sample` and `vitlight probe` on a real tiny iGPT checkpoint made by `vitlight fit` in the test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.conftest import EXPERIMENTS, SMOKE, write_image_folder
from vitlight.checkpoints import load_module
from vitlight.cli import main
from vitlight.tasks.pixel_pretrain import PALETTE_KEY

QUICKSTART = EXPERIMENTS / "igpt_tiny_quickstart.yaml"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One smoke-sized fit of the quickstart iGPT on an 8x8 colour image folder (classes differ by colour)."""
    root = tmp_path_factory.mktemp("igpt")
    folder = write_image_folder(root / "images", per_class=16, size=8)
    threads = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(root / "home"))
        patch.setenv("VITLIGHT_CACHE", str(root / "cache"))
        patch.setenv("WANDB_MODE", "disabled")
        patch.chdir(root)
        torch.set_num_threads(1)
        code = main(
            [
                "fit",
                "--config",
                str(QUICKSTART),
                "--config",
                str(SMOKE),
                "--data",
                "ImageFolder",
                "--data.data_dir",
                str(folder),
                "--data.image_size",
                "8",
                "--data.val_fraction",
                "0.25",
                "--model.init_args.palette_pixels",
                "5000",
                "--runs_dir",
                str(root / "runs"),
                "--trainer.enable_progress_bar",
                "false",
            ]
        )
        torch.set_num_threads(threads)
    assert code == 0
    run_folder = next((root / "runs" / "igpt_tiny_quickstart").iterdir())
    return {
        "root": root,
        "folder": folder,
        "run": run_folder,
        "ckpt": next((run_folder / "checkpoints").glob("best-*.ckpt")),
    }


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_checkpoint_holds_the_palette_and_loads_weights_only(run):
    checkpoint = torch.load(run["ckpt"], map_location="cpu", weights_only=True)
    assert checkpoint[PALETTE_KEY]["centers"].shape == (16, 3)
    module, config = load_module(run["ckpt"])
    assert module.palette.size == 16
    assert config["data"]["class_path"].endswith("ImageFolder")
    # The callback logged a completion grid at the end of training.
    assert list((run["run"] / "samples").glob("epoch=*.png"))


def test_sample_writes_a_completion_grid(run, tmp_path):
    out = tmp_path / "grid"
    assert (
        main(["sample", "--ckpt", str(run["ckpt"]), "--n", "3", "--samples", "2", "--top_k", "4", "--out", str(out)])
        == 0
    )
    grid = np.asarray(Image.open(out / "completions.png"))
    tile = 64 + 2  # 8 px images enlarged 8x, 2 px gaps
    assert grid.shape[0] == 3 * tile + 2  # one row per image
    assert grid.shape[1] == 4 * tile + 4  # original, top half, 2 completions (wider gap before them)


def test_sample_refuses_top_k_larger_than_the_palette(run, tmp_path, capsys):
    assert main(["sample", "--ckpt", str(run["ckpt"]), "--top_k", "17", "--out", str(tmp_path)]) == 2
    assert "top_k=17 (--top_k) must be between 1 and the checkpoint's palette size 16" in capsys.readouterr().err


def test_sample_refuses_images_longer_than_the_positions(run, tmp_path, capsys):
    code = main(["sample", "--ckpt", str(run["ckpt"]), "--out", str(tmp_path), "--data.image_size", "16"])
    assert code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("vitlight: error:")]
    assert len(errors) == 1 and "makes 256 tokens per image, more than the model's 64 positions" in errors[0]


def test_sample_and_probe_refuse_a_palette_mismatch(run, tmp_path, capsys):
    other = tmp_path / "other"
    for name, colour in (("dark", 30), ("light", 220)):
        (other / "train" / name).mkdir(parents=True)
        (other / "test" / name).mkdir(parents=True)
        for i in range(24):
            pixels = np.full((8, 8, 3), colour + i, np.uint8)
            for split in ("train", "test"):
                Image.fromarray(pixels).save(other / split / name / f"{i}.png")
    args = ["--data.data_dir", str(other)]
    assert main(["sample", "--ckpt", str(run["ckpt"]), "--out", str(tmp_path), *args]) == 2
    assert "palette mismatch" in capsys.readouterr().err
    assert main(["probe", "--ckpt", str(run["ckpt"]), "--runs_dir", str(tmp_path), *args]) == 2
    assert "palette mismatch" in capsys.readouterr().err


def test_probe_reaches_near_perfect_accuracy_on_separable_classes(run, tmp_path):
    assert (
        main(["probe", "--ckpt", str(run["ckpt"]), "--layers", "all", "--runs_dir", str(tmp_path), "--l2", "1e-3,1e-1"])
        == 0
    )
    folder = next((tmp_path / "probe_igpt_tiny_quickstart").iterdir())
    summary = json.loads((folder / "summary.json").read_text())
    assert [row["layer"] for row in summary["layers"]] == [0, 1, 2, 3]
    assert summary["best"]["layer"] == summary["best_layer"]
    assert summary["best"]["test_acc"] >= 0.95
    assert summary["baseline"]["name"] == "quantized pixels"
    assert (folder / "probe_accuracy.png").is_file()
    (wandb_run,) = folder.glob("wandb/offline-run-*")  # summary.json records the id W&B gave the run
    assert summary["wandb_run_id"] and wandb_run.name.endswith("-" + summary["wandb_run_id"])


def test_probe_refuses_a_layer_out_of_range(run, tmp_path, capsys):
    assert main(["probe", "--ckpt", str(run["ckpt"]), "--layers", "0,4", "--runs_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "probe layer 4 is out of range for the 4-layer igpt-tiny (valid: 0..3, -4..-1, all)" in err
    assert not (Path(tmp_path) / "probe_igpt_tiny_quickstart").exists()


VIT_CONFIG = """
trainer: {trainer}
model:
  class_path: vitlight.tasks.classification.ImageClassifier
  init_args:
    model_name: vit_tiny_patch16_224
    model_kwargs: {{patch_size: 4, embed_dim: 32, depth: 4, num_heads: 2}}
data:
  class_path: vitlight.data.ImageFolder
  init_args: {{data_dir: {data_dir}, image_size: 8, val_fraction: 0.25, num_workers: 0}}
"""


def test_probe_works_on_a_vit_checkpoint(run, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    config = tmp_path / "tiny_vit.yaml"
    config.write_text(VIT_CONFIG.format(trainer=EXPERIMENTS / "_trainer.yaml", data_dir=run["folder"]))
    runs = tmp_path / "runs"
    code = main(
        [
            "fit",
            "--config",
            str(config),
            "--config",
            str(SMOKE),
            "--runs_dir",
            str(runs),
            "--trainer.enable_progress_bar",
            "false",
        ]
    )
    assert code == 0
    checkpoint = next((runs / "tiny_vit").glob("*/checkpoints/best-*.ckpt"))
    assert main(["probe", "--ckpt", str(checkpoint), "--pool", "cls", "--runs_dir", str(runs), "--l2", "1e-2"]) == 0
    summary = json.loads(next((runs / "probe_tiny_vit").glob("*/summary.json")).read_text())
    assert summary["model"]["class"] == "ImageClassifier" and summary["pool"] == "cls"
    assert [row["layer"] for row in summary["layers"]] == [0, 1, 2, 3]
    assert summary["best"]["test_acc"] >= 0.9
    assert summary["baseline"]["name"] == "pixels"


def test_commands_refuse_unknown_flags(run, capsys):
    assert main(["sample", "--ckpt", str(run["ckpt"]), "--colour", "red"]) == 2
    assert "unknown flag '--colour'" in capsys.readouterr().err
