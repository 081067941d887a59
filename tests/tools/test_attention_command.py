"""`vitlight attention` on real checkpoints written by `vitlight fit` on a tiny image folder."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import EXPERIMENTS, SMOKE, write_image_folder
from vitlight.cli import main

CLASSES = ("cat", "dog", "frog")
# explicit, so that the tests do not depend on the quickstart's own model size
TINY_VIT = {"patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}
NO_CLASS_TOKEN = {**TINY_VIT, "class_token": False, "global_pool": "avg"}


def _fit(data_dir: Path, runs_dir: Path, model_kwargs: dict) -> Path:
    code = main(
        [
            "fit",
            "--config",
            str(EXPERIMENTS / "quickstart.yaml"),
            "--config",
            str(SMOKE),
            "--data",
            "ImageFolder",
            "--data.data_dir",
            str(data_dir),
            "--data.num_workers",
            "0",
            "--data.image_size",
            "16",
            "--model.model_kwargs",
            json.dumps(model_kwargs),
            "--runs_dir",
            str(runs_dir),
        ]
    )
    assert code == 0
    (checkpoint,) = runs_dir.glob("*/*/checkpoints/last.ckpt")
    return checkpoint


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two real checkpoints, made once for this file: a tiny ViT, and a ViT without a class token."""
    root = tmp_path_factory.mktemp("attention_ckpts")
    with pytest.MonkeyPatch.context() as patch:  # the autouse isolation is per test; this runs before it
        patch.setenv("HOME", str(root / "home"))
        patch.setenv("WANDB_MODE", "disabled")
        patch.setenv("VITLIGHT_CACHE", str(root / "cache"))
        patch.chdir(root)
        data = write_image_folder(root / "images", CLASSES, per_class=12, size=16)
        vit = _fit(data, root / "runs_vit", TINY_VIT)
        pooled = _fit(data, root / "runs_pooled", NO_CLASS_TOKEN)
    return {"vit": vit, "pooled": pooled, "data": data}


def _image(path: Path, size: tuple[int, int] = (20, 24), mode: str = "RGB") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(len(str(path)))
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    Image.fromarray(rng.integers(0, 255, size=shape, dtype=np.uint8), mode).save(path)
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("vitlight: error: ")
    return err[0]


def test_writes_one_overlay_per_image_and_prints_the_prediction(checkpoints, tmp_path: Path, capsys):
    a = _image(tmp_path / "in" / "a.png")
    b = _image(tmp_path / "in" / "b.jpg", size=(300, 200), mode="L")
    out = tmp_path / "deep" / "out"
    args = ["attention", "--ckpt", str(checkpoints["vit"]), "--images", str(a), str(b), "--out", str(out)]
    assert main(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_rollout.png", "b_rollout.png"]
    with Image.open(out / "a_rollout.png") as small, Image.open(out / "b_rollout.png") as large:
        # 20x24 is enlarged 7x for display (shorter side >= 128); 300x200 keeps its own size
        assert small.size == (140, 168) and small.mode == "RGB"
        assert large.size == (300, 200) and large.mode == "RGB"
        assert np.asarray(small).std() > 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    for line, source, name in zip(lines, (a, b), ("a_rollout.png", "b_rollout.png")):
        label, probability = line.split(": ", 1)[1].split(" -> ")[0].split()
        assert line.startswith(f"{source}: ") and line.endswith(str(out / name))
        assert label in CLASSES and 0.0 < float(probability) <= 1.0
    # a rerun replaces its own outputs
    assert main(args + ["--head_fusion", "max", "--discard_ratio", "0.5"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a_rollout.png", "b_rollout.png"]


def test_a_symlink_in_the_output_folder_is_replaced_not_followed(checkpoints, tmp_path: Path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"keep me")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a_rollout.png").symlink_to(outside)
    image = _image(tmp_path / "a.png")
    assert main(["attention", "--ckpt", str(checkpoints["vit"]), "--images", str(image), "--out", str(out)]) == 0
    assert outside.read_bytes() == b"keep me"
    assert not (out / "a_rollout.png").is_symlink()
    assert sorted(p.name for p in out.iterdir()) == ["a_rollout.png"]  # no temporary files left


def test_errors_are_one_line_with_exit_code_2(checkpoints, tmp_path: Path, capsys):
    good = _image(tmp_path / "good.png")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    vit = str(checkpoints["vit"])
    cases = [
        (
            ["--ckpt", vit, "--images", str(tmp_path / "missing.png"), "--out", "o"],
            "'" + str(tmp_path / "missing.png") + "' does not exist",
        ),
        (["--ckpt", vit, "--images", str(broken), "--out", "o"], "cannot read image"),
        (["--ckpt", str(checkpoints["pooled"]), "--images", str(good), "--out", "o"], "class token"),
        (
            ["--ckpt", vit, "--images", str(good), "--out", str(blocker / "sub" / "deeper")],
            "cannot create the output folder",
        ),
        (["--ckpt", vit, "--images", str(good), "--out", str(blocker)], "is a file, not a folder"),
        (
            ["--ckpt", vit, "--images", str(good), str(_image(tmp_path / "x" / "good.png")), "--out", "o"],
            "would both be written",
        ),
        (
            ["--ckpt", vit, "--images", str(good), "--out", "o", "--discard_ratio", "1"],
            "invalid --discard_ratio 1.0: it must be in [0, 1)",
        ),
        (["--ckpt", vit, "--images", str(good), "--out", "o", "--head_fusion", "sum"], "invalid choice"),
        (["--ckpt", vit, "--images", str(good), "--out", "o", "--bogus"], "unknown flag '--bogus'"),
        (["--ckpt", str(tmp_path / "none.ckpt"), "--images", str(good), "--out", "o"], "does not exist"),
    ]
    for argv, expected in cases:
        assert main(["attention", *argv]) == 2, argv
        line = _error_line(capsys)
        assert expected in line, (argv, line)
    assert not (tmp_path / "o").exists()  # nothing is created by a run that fails


def test_data_overrides_reach_the_preprocessing(checkpoints, tmp_path: Path, capsys):
    image = _image(tmp_path / "a.png")
    base = ["attention", "--ckpt", str(checkpoints["vit"]), "--images", str(image), "--out", "o"]
    assert main(base + ["--data.image_size", "32"]) == 2
    assert "differs from the 16 the checkpoint was trained at" in _error_line(capsys)
    assert main(base + ["--data.data_dir", str(tmp_path / "gone")]) == 2
    assert "--data.data_dir DIR" in _error_line(capsys)
    assert main(base + ["--data.data_dir", str(checkpoints["data"])]) == 0
    assert os.path.isfile("o/a_rollout.png")
