"""The table of bad inputs (docs/errors.md): one line naming the problem and what is valid, exit 2,
nothing the user had overwritten. Each row runs the real command in-process."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from tests.conftest import EXPERIMENTS, SMOKE, write_image_folder
from vitlight.cli import main

QUICKSTART = str(EXPERIMENTS / "quickstart.yaml")


def base(tmp: Path, *extra: str) -> list[str]:
    return ["fit", "--config", QUICKSTART, "--config", str(SMOKE), "--runs_dir", str(tmp / "runs"), *extra]


def folder(tmp: Path, *extra: str) -> list[str]:
    images = write_image_folder(tmp / "images", per_class=40, size=16)
    return base(tmp, "--data", "ImageFolder", "--data.data_dir", str(images), "--data.image_size", "14", *extra)


def malformed_yaml(tmp: Path) -> list[str]:
    (tmp / "bad.yaml").write_text("trainer: [max_epochs: 3\n")
    return ["fit", "--config", str(tmp / "bad.yaml")]


def corrupt_images(tmp: Path) -> list[str]:
    args = folder(tmp)
    for index in range(5):  # 5 of 120 training images: beyond the tolerated 1%
        (tmp / "images" / "train" / "cat" / f"broken{index}.png").write_bytes(b"\x89PNG not really")
    return args


def checkpoint_of_another_model(tmp: Path) -> list[str]:
    state = {"state_dict": {"backbone.conv1.weight": torch.zeros(64, 3, 7, 7)}}
    torch.save(state, tmp / "resnet.ckpt")
    return base(tmp, "--model.init_args.checkpoint_path", str(tmp / "resnet.ckpt"))


def runs_dir_is_a_file(tmp: Path) -> list[str]:
    (tmp / "not-a-folder").write_text("x")
    return ["fit", "--config", QUICKSTART, "--config", str(SMOKE), "--runs_dir", str(tmp / "not-a-folder" / "runs")]


def grey_images_for_rgb_model(tmp: Path) -> list[str]:
    return base(tmp, "--data.channels", "2")


BAD_INPUTS: dict[str, tuple[Callable[[Path], list[str]], tuple[str, ...]]] = {
    "malformed YAML": (malformed_yaml, ("bad.yaml", "not valid YAML", "at line")),
    "unknown key": (
        lambda t: base(t, "--trainer.max_epoks", "3"),
        ("--trainer.max_epoks", "did you mean --trainer.max_epochs"),
    ),
    "wrong type": (lambda t: base(t, "--data.batch_size", "lots"), ("batch_size", "'lots'", "int")),
    "missing config file": (lambda t: ["fit", "--config", str(t / "nope.yaml")], ("nope.yaml", "does not exist")),
    "missing data folder": (
        lambda t: base(t, "--data", "ImageFolder", "--data.data_dir", str(t / "nowhere")),
        ("nowhere",),
    ),
    "corrupt images beyond 1%": (corrupt_images, ("broken", "1%")),
    "image_size not divisible by patch_size": (
        lambda t: base(t, "--data.image_size", "30"),
        ("30 is not divisible", "patch_size 7"),
    ),
    "checkpoint that does not fit": (checkpoint_of_another_model, ("resnet.ckpt", "lacks")),
    "unknown timm name": (
        lambda t: base(t, "--model.init_args.model_name", "vit_tiny_patch16_2244"),
        ("not a timm model", "vit_tiny_patch16_224"),
    ),
    "unknown data module": (lambda t: base(t, "--data", "CIFAR11"), ("CIFAR11", "CIFAR10")),
    "bad channel count": (grey_images_for_rgb_model, ("channels must be 1 or 3", "2")),
    "output folder not writable": (runs_dir_is_a_file, ("not-a-folder", "writable")),
    "unknown subcommand": (lambda t: ["trian"], ("trian", "fit")),
    "resume with nothing to resume": (lambda t: base(t, "--ckpt_path", "last"), ("nothing to resume",)),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS), ids=lambda c: c.replace(" ", "_"))
def test_bad_input_ends_in_one_clear_line(case: str, tmp_path: Path, capsys):
    make_args, fragments = BAD_INPUTS[case]
    previous = tmp_path / "runs" / "quickstart" / "00000000-000000-previous"
    previous.mkdir(parents=True)
    (previous / "summary.json").write_text('{"status": "finished"}')
    args = make_args(tmp_path)
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("vitlight: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    # nothing the user had is touched
    assert (previous / "summary.json").read_text() == '{"status": "finished"}'
    assert sorted(p.name for p in previous.iterdir()) == ["summary.json"]
