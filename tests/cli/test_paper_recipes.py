"""YAMLs that name a paper reproduce its table row value by value; their headers state the source, the
expected result, the global batch as devices x per-device batch x accumulation, and GPU-hours that follow
from the counted FLOPs. Every other experiment says it is a vitlight recipe."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import EXPERIMENTS

H200_PEAK = 989e12  # dense bf16 FLOP/s
ASSUMED_MFU = 0.40
IMAGENET_TRAIN = 1_281_167

VIT_PAPER = {"vit_b16_imagenet.yaml", "vit_b32_imagenet.yaml", "vit_l16_imagenet.yaml", "vit_h14_imagenet.yaml"}
DEIT_PAPER = {"deit_s16_imagenet.yaml", "deit_b16_imagenet.yaml"}
TRANSFER = {"vit_b16_finetune_cifar10.yaml", "vit_b16_finetune_cifar100.yaml"}
IGPT_PROBES = {
    "igpt_s_linear_probe_cifar10.yaml",
    "igpt_m_linear_probe_cifar10.yaml",
    "igpt_l_linear_probe_cifar10.yaml",
}
PAPER_FILES = sorted(VIT_PAPER | DEIT_PAPER | TRANSFER | IGPT_PROBES)


def load(file: str) -> tuple[str, dict]:
    text = (EXPERIMENTS / file).read_text()
    return text, yaml.safe_load(text)


def header(text: str) -> str:
    return " ".join(line[1:].strip() for line in text.splitlines() if line.startswith("#"))


def global_batch(config: dict) -> tuple[int, int, int]:
    trainer = config["trainer"]
    return (
        int(trainer.get("devices", 1)),
        int(config["data"]["init_args"]["batch_size"]),
        int(trainer.get("accumulate_grad_batches", 1)),
    )


@pytest.mark.parametrize("file", PAPER_FILES)
def test_header_states_source_expectation_batch_and_compute(file: str):
    text, config = load(file)
    words = header(text)
    for part in ("Source:", "Expected:", "Global batch:", "Compute:", "GPU-hours on one H200", "40 % MFU"):
        assert part in words, f"{file}: header lacks {part!r}"
    devices, batch, accumulation = global_batch(config)
    stated = re.search(r"Global batch: (\d+) devices? x (\d+) per device x (\d+) accumulation = (\d+)", words)
    assert stated, f"{file}: global batch not written as devices x per-device batch x accumulation"
    assert tuple(int(v) for v in stated.groups()) == (devices, batch, accumulation, devices * batch * accumulation)


def _stated_compute(words: str) -> tuple[float, float, float]:
    per_image = float(re.search(r"Compute: [^0-9]*?([0-9.]+e[+0-9]+)", words).group(1))
    total = float(re.search(r"= ([0-9.]+e[+0-9]+) FLOPs", words).group(1))
    hours = float(re.search(r"about ([0-9.]+) GPU-hours", words).group(1))
    return per_image, total, hours


@pytest.mark.slow  # counts paper-size models: about 80 s of CPU in all
@pytest.mark.parametrize("file", sorted(VIT_PAPER | DEIT_PAPER | TRANSFER))
def test_gpu_hours_follow_from_the_counted_flops(file: str):
    from vitlight.analysis.flops import timm_model_flops

    text, config = load(file)
    per_image, total, hours = _stated_compute(header(text))
    model, data = config["model"]["init_args"], config["data"]["init_args"]
    size = int(data.get("image_size", 224))
    counted = timm_model_flops(model["model_name"].split(".")[0], size, 1000, train_step=True)
    assert per_image == pytest.approx(counted, rel=0.01), f"{file}: header {per_image:.3e}, counted {counted:.3e}"
    trainer = config["trainer"]
    devices, batch, accumulation = global_batch(config)
    images = (
        IMAGENET_TRAIN * trainer["max_epochs"]
        if "max_epochs" in trainer
        else devices * batch * accumulation * trainer["max_steps"]
    )
    assert total == pytest.approx(per_image * images, rel=0.01)
    assert hours == pytest.approx(total / (H200_PEAK * ASSUMED_MFU) / 3600, rel=0.06)


@pytest.mark.slow  # counts iGPT-S/M/L: about 40 s of CPU in all
@pytest.mark.parametrize("file", sorted(IGPT_PROBES))
def test_igpt_probe_compute_counts_the_forward_through_the_probed_block(file: str):
    from vitlight.analysis.flops import count_training_flops
    from vitlight.models.igpt import HUB_PRESETS, ImageGPT, igpt_config

    text, config = load(file)
    words = header(text)
    model = config["model"]["init_args"]
    cfg = igpt_config(HUB_PRESETS[model["checkpoint_path"]], 1024)
    assert model["layer"] == cfg.n_layer // 2  # the middle block, where the paper's probe accuracy peaks
    forward = count_training_flops(lambda: ImageGPT(cfg), (1, 1024), dtype=torch.long).forward
    stated = float(re.search(r"through block \d+: ([0-9.]+e[+0-9]+)", words).group(1))
    assert stated == pytest.approx(forward, rel=0.01)
    total = float(re.search(r"= ([0-9.]+e[+0-9]+) FLOPs", words).group(1))
    hours = float(re.search(r"about ([0-9.]+) GPU-hours", words).group(1))
    assert hours == pytest.approx(total / (H200_PEAK * ASSUMED_MFU) / 3600, rel=0.06)


@pytest.mark.parametrize("file", sorted(VIT_PAPER))
def test_vit_imagenet_files_are_table_3s_imagenet_row(file: str):
    _, config = load(file)
    trainer, model, data = config["trainer"], config["model"]["init_args"], config["data"]["init_args"]
    optimizer = model["optimizer"]
    assert trainer["max_epochs"] == 300
    assert global_batch(config)[0] * global_batch(config)[1] * global_batch(config)[2] == 4096
    assert model["base_batch_size"] == 4096
    assert optimizer["class_path"] == "torch.optim.AdamW"
    assert optimizer["init_args"] == {"lr": 0.003, "betas": [0.9, 0.999], "weight_decay": 0.3}
    assert model["lr_scheduler"]["class_path"].endswith("WarmupCosine")  # cosine decay
    assert model["lr_scheduler"]["init_args"] == {"warmup_steps": 10000}
    assert model["model_kwargs"] == {"pos_drop_rate": 0.1, "proj_drop_rate": 0.1}  # dropout 0.1, no stochastic depth
    assert model.get("label_smoothing", 0.0) == 0.0
    assert (trainer["gradient_clip_val"], trainer["gradient_clip_algorithm"]) == (1.0, "norm")
    assert data["random_resized_crop"] and data["horizontal_flip"]


@pytest.mark.parametrize("file", sorted(DEIT_PAPER))
def test_deit_files_are_table_9(file: str):
    _, config = load(file)
    trainer, model, data = config["trainer"], config["model"]["init_args"], config["data"]["init_args"]
    devices, batch, accumulation = global_batch(config)
    assert trainer["max_epochs"] == 300 and devices * batch * accumulation == 1024
    assert model["optimizer"]["init_args"]["lr"] == 5e-4 and model["base_batch_size"] == 512  # 5e-4 x batch / 512
    assert model["optimizer"]["init_args"]["weight_decay"] == 0.05
    assert model["lr_scheduler"]["init_args"]["warmup_fraction"] == pytest.approx(5 / 300, rel=1e-3)
    assert model["label_smoothing"] == 0.1 and model["model_kwargs"] == {"drop_path_rate": 0.1}
    assert (model["mixup_alpha"], model["cutmix_alpha"]) == (0.8, 1.0)
    assert trainer["gradient_clip_val"] is None
    assert data["randaugment"].startswith("rand-m9-mstd0.5") and data["repeated_augmentation"] == 3
    assert data["interpolation"] == "bicubic" and data["eval_crop_pct"] == 0.875 and data["random_erasing"] == 0.25
    assert trainer["use_distributed_sampler"] is False


@pytest.mark.parametrize("file", sorted(TRANSFER))
def test_transfer_files_are_the_vit_papers_fine_tuning(file: str):
    _, config = load(file)
    trainer, model, data = config["trainer"], config["model"]["init_args"], config["data"]["init_args"]
    devices, batch, accumulation = global_batch(config)
    assert devices * batch * accumulation == 512 and model["base_batch_size"] == 512
    assert model["model_name"] == "vit_base_patch16_224.orig_in21k" and model["pretrained"] is True
    assert model["optimizer"]["class_path"] == "torch.optim.SGD"
    assert model["optimizer"]["init_args"]["momentum"] == 0.9 and model["optimizer"]["init_args"]["weight_decay"] == 0.0
    assert model["optimizer"]["init_args"]["lr"] in (0.001, 0.003, 0.01, 0.03)  # the paper's grid
    assert trainer["max_steps"] == 10000 and trainer["gradient_clip_val"] == 1.0
    assert data["image_size"] == 384 and data["val_fraction"] == 0.02


def test_every_other_experiment_says_vitlight_recipe_and_why():
    for path in sorted(EXPERIMENTS.glob("*.yaml")):
        if path.name.startswith("_") or path.name in PAPER_FILES:
            continue
        words = header(path.read_text())
        match = re.search(r"vitlight recipe\b[^.:]*[:(]", words)
        assert match, f"{path.name}: a YAML that is not a paper recipe must say 'vitlight recipe' and why"


def test_readme_lists_the_transfer_experiments():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for file in sorted(TRANSFER | IGPT_PROBES):
        assert file in readme, f"README's experiment table lacks {file}"
