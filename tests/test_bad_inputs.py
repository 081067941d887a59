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


def yaml_file(tmp: Path, name: str, text: str) -> str:
    (tmp / name).write_text(text)
    return str(tmp / name)


def duplicated_trainer_key(tmp: Path) -> list[str]:
    return base(tmp, "--config", yaml_file(tmp, "dup.yaml", "trainer:\n  max_epochs: 1\ntrainer:\n  max_epochs: 2\n"))


def missing_include(tmp: Path) -> list[str]:
    return base(tmp, "--config", yaml_file(tmp, "inc.yaml", "trainer: _nowhere.yaml\n"))


def nan_lr_in_yaml(tmp: Path) -> list[str]:
    nan = "model:\n  init_args:\n    optimizer:\n      init_args:\n        lr: .nan\n"
    return folder(tmp, "--config", yaml_file(tmp, "nan.yaml", nan))


def wrong_type_in_yaml(tmp: Path) -> list[str]:
    text = "model:\n  init_args:\n    optimizer:\n      init_args:\n        weight_decay: abc\n"
    return base(tmp, "--config", yaml_file(tmp, "wd.yaml", text))


def data_dir_is_a_file(tmp: Path) -> list[str]:
    (tmp / "afile").write_text("x")
    return base(tmp, "--data", "ImageFolder", "--data.data_dir", str(tmp / "afile"))


def checkpoint_that_is_text(tmp: Path) -> list[str]:
    (tmp / "notes.ckpt").write_text("not a checkpoint")
    return base(tmp, "--ckpt_path", str(tmp / "notes.ckpt"))


def checkpoint_without_config(tmp: Path) -> list[str]:
    run = tmp / "runs" / "quickstart" / "00000000-000000-tested"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("model: {}\n")
    return ["test", "--ckpt_path", str(run / "checkpoints" / "last.ckpt")]


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
    "duplicated YAML key": (duplicated_trainer_key, ("dup.yaml", "key 'trainer' appears twice", "lines 1 and 3")),
    "missing included file": (missing_include, ("inc.yaml", "_nowhere.yaml", "at trainer", "does not exist")),
    "batch size 0": (lambda t: base(t, "--data.batch_size", "0"), ("data.batch_size", "positive", "got 0")),
    "train_size 1.5": (lambda t: base(t, "--data.train_size", "1.5"), ("data.train_size 1.5", "fraction in (0, 1]")),
    "negative learning rate": (
        lambda t: folder(t, "--model.init_args.optimizer.init_args.lr", "-0.1"),
        ("model.init_args.optimizer.init_args.lr", "-0.1"),
    ),
    "NaN learning rate in YAML": (nan_lr_in_yaml, ("model.init_args.optimizer.init_args.lr", "nan")),
    "endless run with a cosine schedule": (
        lambda t: folder(t, "--trainer.max_epochs", "-1"),
        ("WarmupCosine", "trainer.max_epochs is -1", "trainer.max_steps"),
    ),
    "wrong type deep in a config file": (
        wrong_type_in_yaml,
        ("model.init_args.optimizer.init_args.weight_decay (in ", "wd.yaml", "expected a float", "'abc'"),
    ),
    "unknown scheduler class": (
        lambda t: base(t, "--model.init_args.lr_scheduler", '{"class_path": "torch.optim.lr_scheduler.Nope"}'),
        ("model.init_args.lr_scheduler", "'torch.optim.lr_scheduler.Nope'", "no attribute 'Nope'"),
    ),
    "text where a model takes a number": (
        lambda t: base(
            t,
            "--config",
            yaml_file(t, "dpr.yaml", "model:\n  init_args:\n    model_kwargs:\n      drop_path_rate: abc\n"),
        ),
        ("model.init_args.model_kwargs.drop_path_rate='abc'", "linspace()"),
    ),
    "data_dir that is a file": (data_dir_is_a_file, ("afile", "is a file, not a folder")),
    "checkpoint that is not one": (checkpoint_that_is_text, ("notes.ckpt", "not a PyTorch checkpoint")),
    "test with a checkpoint but no config": (
        checkpoint_without_config,
        ("missing data, model", "not from the checkpoint", "00000000-000000-tested/config.yaml"),
    ),
    "experiment name that escapes": (
        lambda t: base(t, "--experiment", "../../x"),
        ("experiment '../../x' is not a single folder name",),
    ),
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
