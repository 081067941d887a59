"""ImageClassifier: timm backbones, recipes' pieces, fine-tuning across resolutions and class counts."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from vitlight.errors import CheckpointError, ConfigError
from vitlight.tasks import ImageClassifier
from vitlight.tasks.optim import weight_decay_groups
from vitlight.tasks.schedules import WarmupCosine
from vitlight.tasks.weights import load_backbone_weights

TINY_VIT = {"patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}


def tiny_vit(num_classes: int = 4, image_size: int = 16, **kwargs) -> ImageClassifier:
    return ImageClassifier(
        model_name="vit_tiny_patch16_224",
        model_kwargs=TINY_VIT,
        num_classes=num_classes,
        image_size=image_size,
        channels=3,
        **kwargs,
    )


def separable_loader(num_classes: int = 4, size: int = 16, count: int = 64) -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(count) % num_classes
    images = torch.randn(count, 3, size, size, generator=generator) * 0.1
    images[torch.arange(count), labels % 3] += 1.0  # each class has its own colour direction
    images[torch.arange(count), (labels + 1) % 3] -= (labels >= 3).float().view(-1, 1, 1)
    return DataLoader(TensorDataset(images, labels), batch_size=16, shuffle=True)


def quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        **kwargs,
    )


def test_unknown_timm_name_lists_close_names():
    with pytest.raises(ConfigError, match="close names: .*resnet50"):
        ImageClassifier(model_name="resnet5O", num_classes=10, image_size=32)


def test_image_size_not_divisible_by_patch_size():
    with pytest.raises(ConfigError, match="30 is not divisible by .*patch_size 4"):
        ImageClassifier(
            model_name="vit_tiny_patch16_224", model_kwargs={"patch_size": 4}, num_classes=10, image_size=30
        )


@pytest.mark.parametrize("name", ["resnet18", "resnext50_32x4d", "resnetv2_50x1_bit"])
def test_cifar_stem_keeps_32px_resolution(name: str):
    with torch.device("meta"):
        plain = ImageClassifier(model_name=name, num_classes=10, image_size=32)
        cifar = ImageClassifier(model_name=name, num_classes=10, image_size=32, cifar_stem=True)
    images = torch.empty(2, 3, 32, 32, device="meta")
    plain_map = plain.backbone.eval().forward_features(images).shape[-1]
    cifar_map = cifar.backbone.eval().forward_features(images).shape[-1]
    assert cifar_map == 4 * plain_map  # no stride-2 conv, no max-pool: 4x the spatial size


def test_cifar_stem_rejects_transformers():
    with pytest.raises(ConfigError, match="cifar_stem applies to ResNet"):
        tiny_vit(cifar_stem=True)


def _names(module, group):
    ids = {id(p) for p in group["params"]}
    return {name for name, p in module.named_parameters() if id(p) in ids}


def test_weight_decay_skips_position_embeddings_class_token_norms_and_biases():
    model = tiny_vit()
    decay, no_decay = weight_decay_groups(model.backbone)
    assert (
        no_decay["weight_decay"] == 0.0 and "weight_decay" not in decay
    )  # the decaying group takes the optimizer's value
    skipped, decayed = _names(model.backbone, no_decay), _names(model.backbone, decay)
    assert {
        "pos_embed",
        "cls_token",
        "norm.weight",
        "norm.bias",
        "blocks.0.norm1.weight",
        "blocks.0.attn.qkv.bias",
        "head.bias",
    } <= skipped
    assert {"patch_embed.proj.weight", "blocks.0.attn.qkv.weight", "blocks.0.mlp.fc1.weight", "head.weight"} <= decayed
    assert skipped.isdisjoint(decayed) and skipped | decayed == {name for name, _ in model.backbone.named_parameters()}


def test_warmup_then_cosine():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = WarmupCosine(optimizer, warmup_steps=4, total_steps=20)
    rates = []
    for _ in range(20):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert rates[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert rates[4] == pytest.approx(1.0) and rates[-1] < 0.05
    assert all(a >= b for a, b in zip(rates[4:], rates[5:]))


@pytest.mark.parametrize(
    "extra", [{}, {"mixup_alpha": 0.2, "cutmix_alpha": 1.0, "label_smoothing": 0.1}, {"ema_decay": 0.9}]
)
def test_trains_and_learns(extra: dict):
    torch.manual_seed(0)
    model = tiny_vit(optimizer=lambda params: torch.optim.AdamW(params, lr=3e-3), lr_scheduler=None, **extra)
    loader = separable_loader()
    trainer = quiet_trainer(max_epochs=8)
    trainer.fit(model, loader, loader)
    (results,) = trainer.validate(model, loader, verbose=False)
    assert results["val/acc"] > 0.8, results
    if "ema_decay" in extra:
        assert "val/acc_ema" in results


def test_training_metrics_skip_label_checks_evaluation_keeps_them():
    # the checks call torch.unique on the labels: a device sync on every training step
    model = tiny_vit(num_classes=10)
    assert set(model.train_metrics) == {"train/acc", "train/acc_top5"}
    assert not any(metric.validate_args for metric in model.train_metrics.values())
    assert all(metric.validate_args for metric in model.val_metrics.values())
    assert all(metric.validate_args for metric in model.test_metrics.values())


def test_frozen_backbone_trains_only_the_head():
    model = tiny_vit(freeze_backbone=True)
    trainable = {name for name, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    before = model.backbone.blocks[0].attn.qkv.weight.clone()
    quiet_trainer(max_epochs=1).fit(model, separable_loader())
    assert torch.equal(before, model.backbone.blocks[0].attn.qkv.weight)


def save_backbone(model: ImageClassifier, path: Path) -> Path:
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in model.backbone.state_dict().items()}}, path)
    return path


def test_fine_tune_at_a_new_resolution_with_a_new_head(tmp_path: Path):
    source = tiny_vit(num_classes=10, image_size=16)  # 4x4 grid of patches
    checkpoint = save_backbone(source, tmp_path / "source.ckpt")
    target = tiny_vit(num_classes=3, image_size=32, checkpoint_path=str(checkpoint))  # 8x8 grid, 3 classes
    assert target.backbone.pos_embed.shape == (1, 1 + 64, 32)
    assert torch.equal(target.backbone.blocks[1].mlp.fc1.weight, source.backbone.blocks[1].mlp.fc1.weight)
    assert torch.equal(target.backbone.cls_token, source.backbone.cls_token)
    # the class token's position embedding is kept; the grid is interpolated, not copied or re-initialised
    assert torch.equal(target.backbone.pos_embed[:, 0], source.backbone.pos_embed[:, 0])
    old_grid = source.backbone.pos_embed[0, 1:].reshape(4, 4, 32)
    new_grid = target.backbone.pos_embed[0, 1:].reshape(8, 8, 32)
    assert torch.allclose(new_grid.mean(dim=(0, 1)), old_grid.mean(dim=(0, 1)), atol=0.05)
    assert target.backbone.head.weight.shape == (3, 32)
    assert target(torch.randn(2, 3, 32, 32)).shape == (2, 3)


def test_fine_tune_from_safetensors(tmp_path: Path):
    from safetensors.torch import save_file

    source = tiny_vit(num_classes=4)
    save_file({k: v.contiguous() for k, v in source.backbone.state_dict().items()}, tmp_path / "w.safetensors")
    target = tiny_vit(num_classes=4, checkpoint_path=str(tmp_path / "w.safetensors"))
    for name, value in source.backbone.state_dict().items():
        assert torch.equal(value, target.backbone.state_dict()[name]), name


def test_checkpoint_of_another_architecture_is_refused(tmp_path: Path):
    checkpoint = save_backbone(
        ImageClassifier(model_name="resnet18", num_classes=4, image_size=16), tmp_path / "r.ckpt"
    )
    with pytest.raises(CheckpointError, match="lacks .* of the model's weights"):
        load_backbone_weights(tiny_vit().backbone, checkpoint)


def test_checkpoint_with_other_shapes_is_refused(tmp_path: Path):
    wider = ImageClassifier(
        model_name="vit_tiny_patch16_224", model_kwargs={**TINY_VIT, "embed_dim": 48}, num_classes=4, image_size=16
    )
    checkpoint = save_backbone(wider, tmp_path / "wide.ckpt")
    with pytest.raises(CheckpointError, match="does not fit the model"):
        tiny_vit(checkpoint_path=str(checkpoint))


def test_missing_or_corrupt_checkpoint(tmp_path: Path):
    with pytest.raises(CheckpointError, match="does not exist"):
        tiny_vit(checkpoint_path=str(tmp_path / "nope.ckpt"))
    (tmp_path / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        tiny_vit(checkpoint_path=str(tmp_path / "bad.ckpt"))
