"""Checkpoints of runs with `compile: true` load everywhere a checkpoint is read.

The quickstart ViT and the quickstart iGPT are compiled (inductor, with the system C compiler),
trained two steps, and their checkpoints read back by test/validate --ckpt_path, sample, probe,
attention, fine-tuning (model.checkpoint_path) and LinearProbe.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tests.conftest import EXPERIMENTS, SMOKE, write_image_folder
from vitlight.cli import main

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="inductor needs a C compiler"
)
TWO_STEPS = ["--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.enable_progress_bar", "false"]
COMPILED = ["--model.init_args.compile", "true"]


def fit(tmp_path: Path, experiment: str, images: Path, *extra: str) -> Path:
    runs = tmp_path / "runs"
    args = [
        "fit",
        "--config",
        str(EXPERIMENTS / experiment),
        "--config",
        str(SMOKE),
        "--data",
        "ImageFolder",
        "--data.data_dir",
        str(images),
        "--data.image_size",
        "8",
        "--data.val_fraction",
        "0.25",
        "--runs_dir",
        str(runs),
        *TWO_STEPS,
        *extra,
    ]
    assert main(args) == 0
    run = next((runs / Path(experiment).stem).iterdir())
    return run / "checkpoints" / "last.ckpt"


@pytest.fixture()
def images(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("WANDB_MODE", "disabled")
    return write_image_folder(tmp_path / "images", per_class=16, size=8)


def test_compiled_vit_checkpoint_loads_everywhere(tmp_path: Path, images: Path):
    ckpt = fit(tmp_path, "quickstart.yaml", images, "--model.init_args.model_kwargs.patch_size", "4", *COMPILED)
    keys = torch.load(ckpt, weights_only=True)["state_dict"]
    assert not any("_orig_mod" in key for key in keys)  # compiled in place: the plain module's keys
    config = ckpt.parents[1] / "config.yaml"
    for command in ("test", "validate"):
        assert (
            main(
                [
                    command,
                    "--config",
                    str(config),
                    "--ckpt_path",
                    str(ckpt),
                    "--runs_dir",
                    str(tmp_path / "eval"),
                    "--trainer.enable_progress_bar",
                    "false",
                ]
            )
            == 0
        )
    image = next((images / "test").rglob("*.png"))
    assert main(["attention", "--ckpt", str(ckpt), "--images", str(image), "--out", str(tmp_path / "overlays")]) == 0
    assert (
        main(["probe", "--ckpt", str(ckpt), "--layers", "0", "--runs_dir", str(tmp_path / "probe"), "--l2", "1e-2"])
        == 0
    )
    # fine-tuning and LinearProbe, each from the compiled run's checkpoint
    fit(
        tmp_path / "finetune",
        "quickstart.yaml",
        images,
        "--model.init_args.model_kwargs.patch_size",
        "4",
        "--model.init_args.checkpoint_path",
        str(ckpt),
    )
    probe_run = tmp_path / "linear"
    assert (
        main(
            [
                "fit",
                "--config",
                str(EXPERIMENTS / "igpt_tiny_quickstart_probe.yaml"),
                "--config",
                str(SMOKE),
                "--data",
                "ImageFolder",
                "--data.data_dir",
                str(images),
                "--data.image_size",
                "8",
                "--model.init_args.checkpoint_path",
                str(ckpt),
                "--runs_dir",
                str(probe_run),
                "--trainer.max_steps",
                "2",
                "--trainer.enable_progress_bar",
                "false",
            ]
        )
        == 0
    )


@pytest.mark.slow  # inductor builds the per-block iGPT for ~1.5 min; tests/tasks/test_igpt_compile.py keeps
# compile's frames and the checkpoint keys in the default run
def test_compiled_igpt_checkpoint_loads_everywhere(tmp_path: Path, images: Path):
    ckpt = fit(
        tmp_path,
        "igpt_tiny_quickstart.yaml",
        images,
        "--model.init_args.n_layer",
        "2",
        "--model.init_args.palette_pixels",
        "2000",
        *COMPILED,
    )
    assert not any("_orig_mod" in key for key in torch.load(ckpt, weights_only=True)["state_dict"])
    assert main(["sample", "--ckpt", str(ckpt), "--n", "2", "--out", str(tmp_path / "samples")]) == 0
    assert list((tmp_path / "samples").glob("*.png"))
    assert (
        main(["probe", "--ckpt", str(ckpt), "--layers", "all", "--runs_dir", str(tmp_path / "probe"), "--l2", "1e-2"])
        == 0
    )
    fit(
        tmp_path / "finetune",
        "igpt_tiny_quickstart.yaml",
        images,
        "--model.init_args.n_layer",
        "2",
        "--model.init_args.palette_pixels",
        "2000",
        "--model.init_args.classifier_weight",
        "1.0",
        "--model.init_args.checkpoint_path",
        str(ckpt),
    )


def test_checkpoints_of_older_compiled_runs_still_load(tmp_path: Path):
    """Before vitlight compiled in place, torch.compile replaced the backbone: keys had `_orig_mod.`."""
    from vitlight.checkpoints import without_compile_wrapper

    old = {"backbone._orig_mod.blocks.0.attn.qkv.weight": torch.zeros(1), "head.bias": torch.ones(1)}
    assert set(without_compile_wrapper(old)) == {"backbone.blocks.0.attn.qkv.weight", "head.bias"}
