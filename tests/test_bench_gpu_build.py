"""bench/gpu_build.py builds from an experiment YAML what `vitlight fit --config` builds, without jsonargparse."""

import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import EXPERIMENTS
from vitlight.cli import VitlightCLI

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import gpu_build  # noqa: E402


class BuildOnlyCLI(VitlightCLI):
    """VitlightCLI(run=False) as it parses, links and instantiates; no run folder (that needs a subcommand)."""

    def before_instantiate_classes(self) -> None:
        pass


def _public(obj) -> dict:
    return {k: v for k, v in vars(obj).items() if not k.startswith("_") and k not in ("trainer", "hparams")}


def _normalised(value):
    return tuple(value) if isinstance(value, list) else value


def _optimizer_and_scheduler(module):
    optimizer = module.optimizer_factory([torch.nn.Parameter(torch.zeros(2, 2))])
    scheduler = module.scheduler_factory(optimizer) if module.scheduler_factory else None
    state = {k: v for k, v in vars(scheduler).items() if k not in ("optimizer", "lr_lambdas")} if scheduler else None
    return type(optimizer), {k: _normalised(v) for k, v in optimizer.defaults.items()}, type(scheduler), state


@pytest.mark.parametrize("experiment", ["quickstart.yaml", "igpt_tiny_quickstart.yaml", "resnet18_cifar10.yaml"])
def test_builds_the_same_module_data_and_trainer_settings_as_the_cli(experiment, tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["vitlight"])  # the CLI would read pytest's arguments otherwise
    path = EXPERIMENTS / experiment
    overrides = {"data.init_args.data_dir": str(tmp_path)} if "cifar10" in experiment else {}
    cli_args = ["--config", str(path), "--runs_dir", str(tmp_path / "runs")]
    cli_args += [f"--data.data_dir={tmp_path}"] if overrides else []
    cli = BuildOnlyCLI(args=cli_args, run=False)
    built = gpu_build.build([path], overrides)
    assert type(built.module) is type(cli.model) and type(built.datamodule) is type(cli.datamodule)
    assert dict(built.module.hparams) == {k: v for k, v in cli.model.hparams.items() if not k.startswith("_")}
    assert _optimizer_and_scheduler(built.module) == _optimizer_and_scheduler(cli.model)
    assert _public(built.datamodule) == _public(cli.datamodule)
    for key in ("gradient_clip_val", "gradient_clip_algorithm", "max_epochs", "log_every_n_steps"):
        assert built.trainer.get(key) == cli.config["trainer"][key], key
    # the same seed before the weights were drawn
    assert all(torch.equal(a, b) for a, b in zip(built.module.state_dict().values(), cli.model.state_dict().values()))


def test_includes_resolve_relative_to_the_file_from_any_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = gpu_build.read_config([EXPERIMENTS / "vit_b16_imagenet.yaml"])
    assert config["trainer"]["precision"] == "bf16-mixed"  # the file's own trainer section
    assert config["trainer"]["logger"]["class_path"].endswith("WandbLogger")  # _trainer.yaml's own include
    assert [c["class_path"].rsplit(".", 1)[-1] for c in config["trainer"]["callbacks"]] == [
        "ModelCheckpoint",
        "LearningRateMonitor",
    ]


def test_later_files_and_overrides_win_and_a_new_class_path_drops_old_init_args(tmp_path):
    first = tmp_path / "a.yaml"
    first.write_text(
        "model:\n  class_path: x.A\n  init_args: {depth: 2, width: 8}\ndata:\n  class_path: x.D\n  init_args: {batch_size: 4}\n"
    )
    second = tmp_path / "b.yaml"
    second.write_text("model:\n  init_args: {depth: 3}\ndata:\n  class_path: x.E\n")
    config = gpu_build.read_config([first, second], {"data.batch_size": 7, "model.init_args.width": 16})
    assert config["model"] == {"class_path": "x.A", "init_args": {"depth": 3, "width": 16}}
    assert config["data"] == {"class_path": "x.E", "init_args": {"batch_size": 7}}


def test_callable_arguments_become_factories_and_objects_are_built():
    node = {
        "class_path": "vitlight.tasks.ImageClassifier",
        "init_args": {
            "model_name": "resnet18",
            "num_classes": 3,
            "image_size": 16,
            "optimizer": {"class_path": "torch.optim.SGD", "init_args": {"lr": 0.5}},
            "lr_scheduler": None,
        },
    }
    module = gpu_build.instantiate(node)
    optimizer = module.optimizer_factory([torch.nn.Parameter(torch.zeros(1))])
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["lr"] == 0.5


def test_errors_name_the_file_or_the_class(tmp_path):
    with pytest.raises(gpu_build.BuildError, match="config file .*missing.yaml' does not exist"):
        gpu_build.read_config([tmp_path / "missing.yaml"])
    with pytest.raises(
        gpu_build.BuildError, match="class 'nowhere.Thing' cannot be imported: no module named 'nowhere'"
    ):
        gpu_build.instantiate({"class_path": "nowhere.Thing"})
