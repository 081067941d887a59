"""Every experiment YAML is exercised: trained for a few steps with the smoke config, or, for
paper-size models marked `# vitlight-test: build-only`, parsed and built on the meta device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import EXPERIMENTS, SMOKE
from tests.data.conftest import cifar_batches
from vitlight.checkpoints import import_class
from vitlight.cli import main
from vitlight.models.igpt import HUB_PRESETS

BUILD_ONLY_MARK = "# vitlight-test: build-only"
EXPERIMENT_FILES = sorted(p for p in EXPERIMENTS.glob("*.yaml") if not p.name.startswith("_"))
RECIPES = sorted(EXPERIMENTS.glob("_recipe_*.yaml"))


def is_build_only(path: Path) -> bool:
    return BUILD_ONLY_MARK in path.read_text()


def data_class_path(path: Path) -> str:
    return yaml.safe_load(path.read_text())["data"]["class_path"]


def data_arguments(path: Path, root: Path) -> list[str]:
    """Local files in the format the experiment's data module reads; nothing for the embedded digits."""
    name = data_class_path(path).rsplit(".", 1)[-1]
    if name == "EmbeddedDigits":
        return []
    if name in ("CIFAR10", "CIFAR100"):
        variant, classes = ("cifar10", 10) if name == "CIFAR10" else ("cifar100", 100)
        folder = cifar_batches(root, variant, per_batch=classes * 2, num_classes=classes)
        return ["--data.data_dir", str(folder)]
    raise AssertionError(f"{path.name}: no smoke fixture for data module {name}; add one to this test")


def resolved_config(args: list[str], capsys: pytest.CaptureFixture) -> dict:
    with pytest.raises(SystemExit) as exit_:
        main([*args, "--print_config"])
    assert exit_.value.code == 0, capsys.readouterr().err
    return yaml.safe_load(capsys.readouterr().out)


def test_every_experiment_is_covered():
    assert len(EXPERIMENT_FILES) >= 20
    assert any(not is_build_only(p) for p in EXPERIMENT_FILES)


@pytest.mark.parametrize("path", [p for p in EXPERIMENT_FILES if not is_build_only(p)], ids=lambda p: p.stem)
def test_experiment_trains_with_the_smoke_config(path: Path, tmp_path: Path):
    runs = tmp_path / "runs"
    code = main(
        [
            "fit",
            "--config",
            str(path),
            "--config",
            str(SMOKE),
            "--runs_dir",
            str(runs),
            "--trainer.enable_progress_bar",
            "false",
            *data_arguments(path, tmp_path / "data"),
        ]
    )
    assert code == 0
    (run,) = (runs / path.stem).iterdir()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["test"], summary
    assert all(value == value for value in summary["test"].values())  # no NaN


def openai_source(hub_name: str) -> dict:
    """The probed module of an OpenAI ImageGPT probe, as LinearProbe records it: its shape and architecture."""
    return {
        "class_path": "vitlight.tasks.pixel_pretrain.PixelPretrainer",
        "init_args": {
            "preset": HUB_PRESETS[hub_name],
            "architecture": "openai",
            "palette_size": 512,
            "n_positions": 1024,
            "image_size": 32,
        },
    }


def build_on_meta(config: dict) -> tuple[torch.nn.Module, object]:
    """The experiment's data module (cheap: no files read) and its model on the meta device, linked like the CLI does."""
    data_section, model_section = config["data"], config["model"]
    data = import_class(data_section["class_path"])(**data_section["init_args"])
    model_arguments = {k: v for k, v in model_section["init_args"].items() if k not in ("optimizer", "lr_scheduler")}
    model_arguments.update(num_classes=data.num_classes, image_size=data.image_size, channels=data.channels)
    model_arguments.pop("ema_decay", None)  # timm's EMA copy cannot live on the meta device; tested on CPU instead
    if model_arguments.get("pretrained"):
        model_arguments["pretrained"] = False  # released weights need the hub; loading them is tested in tests/tasks
    source = model_arguments.get("checkpoint_path")
    if source in HUB_PRESETS:  # OpenAI's ImageGPT: the same architecture, built without its weights
        model_arguments.update(checkpoint_path=None, source=openai_source(source))
    with torch.device("meta"):
        model = import_class(model_section["class_path"])(**model_arguments)
    return model, data


@pytest.mark.parametrize("path", [p for p in EXPERIMENT_FILES if is_build_only(p)], ids=lambda p: p.stem)
def test_paper_size_experiment_parses_and_builds_on_meta(path: Path, capsys):
    model, data = build_on_meta(resolved_config(["fit", "--config", str(path)], capsys))
    images = torch.empty(2, data.channels, data.image_size, data.image_size, device="meta")
    if hasattr(model, "backbone"):
        assert model(images).shape == (2, data.num_classes)
    assert sum(p.numel() for p in model.parameters()) > 0


@pytest.mark.parametrize(
    "file, expected_millions",
    [("vit_b16_imagenet.yaml", 86), ("vit_l16_imagenet.yaml", 307), ("vit_h14_imagenet.yaml", 632)],
)
def test_vit_paper_parameter_counts(file: str, expected_millions: float, capsys):
    """The ViT paper's Table 1: ViT-B/16, L/16, H/14 at 224 px and 1,000 classes, within 1.5%."""
    model, data = build_on_meta(resolved_config(["fit", "--config", str(EXPERIMENTS / file)], capsys))
    assert (data.num_classes, data.image_size) == (1000, 224)
    count = sum(p.numel() for p in model.backbone.parameters())
    assert abs(count / 1e6 - expected_millions) / expected_millions < 0.015, count


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_recipes_stack_onto_an_experiment(recipe: Path, capsys):
    config = resolved_config(
        ["fit", "--config", str(EXPERIMENTS / "vit_ti4_cifar10.yaml"), "--config", str(recipe)], capsys
    )
    optimizer = config["model"]["init_args"]["optimizer"]
    assert config["trainer"]["gradient_clip_val"] == 1.0
    if "finetune" in recipe.name:
        assert optimizer["class_path"] == "torch.optim.SGD"
        assert optimizer["init_args"]["momentum"] == 0.9 and optimizer["init_args"]["weight_decay"] == 0.0
    else:
        assert optimizer["class_path"] == "torch.optim.AdamW"
        assert config["model"]["init_args"]["label_smoothing"] > 0


@pytest.mark.parametrize(
    "file, block",
    [
        ("vit_h14_imagenet.yaml", "timm.models.vision_transformer.Block"),
        ("igpt_xl_cifar10.yaml", "vitlight.models.igpt_model.Block"),
    ],
)
def test_paper_size_experiments_shard_by_block_with_fsdp(file: str, block: str, capsys):
    """Lightning runs FSDP on GPUs only (tests/gpu trains with it); here the strategy parses and builds."""
    strategy = resolved_config(["fit", "--config", str(EXPERIMENTS / file)], capsys)["trainer"]["strategy"]
    assert strategy["class_path"] == "vitlight.fsdp.BlockFSDP"
    built = import_class(strategy["class_path"])(**strategy["init_args"])
    assert {f"{c.__module__}.{c.__qualname__}" for c in built.block_classes} == {block}
    assert built.sharding_strategy.name == "FULL_SHARD"
    assert built._activation_checkpointing_kwargs  # blocks recompute their activations in the backward pass


def test_fsdp_names_a_block_class_that_cannot_be_imported():
    from vitlight.errors import ConfigError
    from vitlight.fsdp import BlockFSDP

    with pytest.raises(ConfigError, match="cannot be imported"):
        BlockFSDP(block_classes=["timm.models.vision_transformer.NoSuchBlock"])
