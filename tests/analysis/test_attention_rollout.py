"""Attention rollout: the math by hand, timm ViT/DeiT integration, errors, overlays."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from torch import nn

from vitlight.analysis.attention_rollout import attention_rollout, capture_attentions, rollout_from_attentions
from vitlight.analysis.overlay import overlay_heatmap, save_overlays

# Layer 1: one head. Layer 2: two heads. Rows sum to 1, token 0 is the class token.
W1 = [[0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6]]
H1 = [[0.2, 0.4, 0.4], [0.3, 0.3, 0.4], [0.5, 0.25, 0.25]]
H2 = [[0.6, 0.2, 0.2], [0.1, 0.5, 0.4], [0.3, 0.25, 0.45]]


def hand_layers() -> list[torch.Tensor]:
    return [torch.tensor([[W1]]), torch.tensor([[H1, H2]])]  # (1, 1, 3, 3), (1, 2, 3, 3)


def tiny_vit(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    args = dict(pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=10)
    return timm.create_model("vit_tiny_patch16_224", **{**args, **kwargs})


# --- the pure function against hand-computed numbers -------------------------------


def test_rollout_mean_by_hand() -> None:
    # A1 = (W1 + I) / 2 (rows of W1 + I sum to 2); class row = [0.75, 0.125, 0.125]
    a1 = torch.tensor([[0.75, 0.125, 0.125], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
    # mean(H1, H2) class row = [0.4, 0.3, 0.3]; A2 class row = ([0.4, 0.3, 0.3] + [1, 0, 0]) / 2
    a2_row0 = torch.tensor([0.7, 0.15, 0.15])
    # class row of A2 @ A1 = 0.7*A1[0] + 0.15*A1[1] + 0.15*A1[2]
    row = a2_row0[0] * a1[0] + a2_row0[1] * a1[1] + a2_row0[2] * a1[2]
    assert torch.allclose(row, torch.tensor([0.5475, 0.23, 0.2225]))
    got = rollout_from_attentions(hand_layers(), "mean", 0.0, num_prefix_tokens=1)
    assert got.shape == (1, 2)
    assert torch.allclose(got, torch.tensor([[0.23, 0.2225]]), atol=1e-6)


def test_rollout_max_and_min_by_hand() -> None:
    a1 = torch.tensor([[0.75, 0.125, 0.125], [0.1, 0.8, 0.1], [0.05, 0.15, 0.8]])
    # max(H1, H2) class row = [0.6, 0.4, 0.4]; + I -> [1.6, 0.4, 0.4] / 2.4
    a2_max = torch.tensor([1.6, 0.4, 0.4]) / 2.4
    # min(H1, H2) class row = [0.2, 0.2, 0.2]; + I -> [1.2, 0.2, 0.2] / 1.6
    a2_min = torch.tensor([1.2, 0.2, 0.2]) / 1.6
    for fusion, a2 in (("max", a2_max), ("min", a2_min)):
        row = a2[0] * a1[0] + a2[1] * a1[1] + a2[2] * a1[2]
        got = rollout_from_attentions(hand_layers(), fusion, 0.0, 1)
        assert torch.allclose(got[0], row[1:], atol=1e-6), fusion
    # the same numbers written out: max -> [29/120, 28/120], min -> [0.2125, 0.20625]
    assert torch.allclose(rollout_from_attentions(hand_layers(), "max"), torch.tensor([[29 / 120, 28 / 120]]))
    assert torch.allclose(rollout_from_attentions(hand_layers(), "min"), torch.tensor([[0.2125, 0.20625]]))


def test_discard_keeps_class_token_self_attention() -> None:
    # (0, 0) = 0.05 is the smallest entry but must survive; int(9 * 0.34) = 3 entries go:
    # 0.1 at (2, 0), 0.2 at (1, 0) and 0.2 at (1, 2).
    w = torch.tensor([[[[0.05, 0.45, 0.5], [0.2, 0.6, 0.2], [0.1, 0.3, 0.6]]]])
    got = rollout_from_attentions([w], "mean", 0.34, 1)
    # class row: ([0.05, 0.45, 0.5] + [1, 0, 0]) / 2.0 -> patches [0.225, 0.25]
    assert torch.allclose(got, torch.tensor([[0.225, 0.25]]))
    # discarding changes a two-layer rollout through the other rows
    two = [w, w]
    kept = rollout_from_attentions(two, "mean", 0.0)
    assert not torch.allclose(rollout_from_attentions(two, "mean", 0.34), kept)


def test_rollout_batch_and_prefix_tokens() -> None:
    layers = hand_layers()
    swapped = [torch.tensor([[H1, H2]]), torch.tensor([[W1]]).expand(1, 2, 3, 3)]
    batch = [torch.cat([a, b]) for a, b in zip([layers[0].expand(1, 2, 3, 3), layers[1]], swapped)]
    got = rollout_from_attentions(batch, "mean", 0.0, 1)
    assert torch.allclose(got[0], rollout_from_attentions(layers, "mean", 0.0, 1)[0])
    assert torch.allclose(got[1], rollout_from_attentions(swapped, "mean", 0.0, 1)[0])
    assert rollout_from_attentions(layers, "mean", 0.0, 2).shape == (1, 1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(head_fusion="sum"), "head_fusion must be one of mean, max, min; got 'sum'"),
        (dict(discard_ratio=1.0), "discard_ratio must be in [0, 1); got 1.0"),
        (dict(discard_ratio=-0.1), "discard_ratio must be in [0, 1); got -0.1"),
    ],
)
def test_bad_options(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        rollout_from_attentions(hand_layers(), **kwargs)
    with pytest.raises(ValueError, match=re.escape(message)):
        attention_rollout(tiny_vit(), torch.zeros(1, 3, 32, 32), **kwargs)


# --- timm models --------------------------------------------------------------------


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.5])
def test_tiny_vit_maps(fusion: str, discard: float) -> None:
    model, images = tiny_vit(), torch.randn(2, 3, 32, 32)
    maps = attention_rollout(model, images, fusion, discard)
    assert maps.shape == (2, 4, 4)
    assert torch.isfinite(maps).all() and (maps >= 0).all()
    assert torch.allclose(maps.flatten(1).amax(1), torch.ones(2))


def test_captured_weights_match_timm_unfused_path() -> None:
    model, images = tiny_vit(qk_norm=True), torch.randn(2, 3, 32, 32)
    model.eval()
    before = model(images)
    ours = capture_attentions(model, images)
    assert torch.equal(model(images), before)  # hooks gone, output untouched
    assert all(not blk.attn._forward_pre_hooks for blk in model.blocks)
    assert all(blk.attn.fused_attn == timm.layers.use_fused_attn() for blk in model.blocks)

    # timm's own probabilities: the non-fused path feeds them to attn_drop.
    theirs: list[torch.Tensor] = []
    hooks = [blk.attn.attn_drop.register_forward_hook(lambda m, i, o: theirs.append(o)) for blk in model.blocks]
    for blk in model.blocks:
        blk.attn.fused_attn = False
    with torch.no_grad():
        assert torch.allclose(model(images), before, atol=1e-5)
    for h in hooks:
        h.remove()
    assert len(ours) == len(theirs) == 2
    for a, b in zip(ours, theirs):
        assert a.shape == (2, 3, 17, 17)
        assert torch.allclose(a, b, atol=1e-6)
    expected = rollout_from_attentions(theirs, "mean", 0.0, 1).reshape(2, 4, 4)
    expected = expected / expected.flatten(1).amax(1)[:, None, None]
    assert torch.allclose(attention_rollout(model, images), expected, atol=1e-6)


def test_mode_restored() -> None:
    model = tiny_vit(drop_rate=0.5)
    model.train()
    model.blocks[1].eval()  # a mixed state must come back exactly
    modes = {name: m.training for name, m in model.named_modules()}
    attention_rollout(model, torch.randn(1, 3, 32, 32))
    assert {name: m.training for name, m in model.named_modules()} == modes


def test_eval_mode_makes_rollout_deterministic() -> None:
    model, images = tiny_vit(drop_rate=0.5, attn_drop_rate=0.5), torch.randn(1, 3, 32, 32)
    model.train()
    assert torch.equal(attention_rollout(model, images), attention_rollout(model, images))


@pytest.mark.parametrize(
    ("name", "kwargs", "shape"),
    [
        ("deit_tiny_distilled_patch16_224", dict(img_size=32, patch_size=8, depth=1), (1, 4, 4)),
        ("vit_tiny_patch16_224", dict(img_size=32, patch_size=8, depth=1, reg_tokens=2), (1, 4, 4)),
        ("vit_tiny_patch16_224", dict(img_size=(32, 48), patch_size=8, depth=1), (1, 4, 6)),
    ],
)
def test_prefix_tokens_and_non_square(name: str, kwargs: dict, shape: tuple) -> None:
    model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs)
    images = torch.randn(1, 3, 8 * shape[1], 8 * shape[2])
    maps = attention_rollout(model, images)
    assert maps.shape == shape and torch.isfinite(maps).all()


def test_dynamic_img_size() -> None:
    model = tiny_vit(dynamic_img_size=True)
    assert attention_rollout(model, torch.randn(1, 3, 48, 32)).shape == (1, 6, 4)


@pytest.mark.parametrize(
    ("model", "label"),
    [
        (lambda: tiny_vit(class_token=False, global_pool="avg"), "VisionTransformer (vit_tiny_patch16_224)"),
        (lambda: timm.create_model("resnet18", pretrained=False, num_classes=10), "ResNet (resnet18)"),
    ],
)
def test_model_without_class_token(model, label: str) -> None:
    message = f"attention rollout needs a ViT/DeiT with a class token; {label} has none"
    with pytest.raises(ValueError, match=re.escape(message)):
        attention_rollout(model(), torch.zeros(1, 3, 32, 32))


# --- overlays -----------------------------------------------------------------------


def test_overlay_heatmap_blends() -> None:
    image = np.full((20, 30, 3), 100, dtype=np.uint8)
    heat = torch.rand(4, 6)
    out = overlay_heatmap(image, heat, alpha=0.5)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert np.array_equal(overlay_heatmap(torch.from_numpy(image), heat, alpha=0.0), image)
    assert not np.array_equal(out, image)
    with pytest.raises(ValueError, match="image must be"):
        overlay_heatmap(image.astype(np.float32), heat)


def test_save_overlays_writes_pngs(tmp_path: Path) -> None:
    model, images = tiny_vit(), torch.randn(2, 3, 32, 32)
    maps = attention_rollout(model, images)
    rgb = torch.randint(0, 256, (2, 64, 48, 3), dtype=torch.uint8)
    paths = save_overlays(rgb, maps, tmp_path / "out", ["a", "b.png"])
    assert [p.name for p in paths] == ["a.png", "b.png"]
    for path in paths:
        with Image.open(path) as img:
            assert img.size == (48, 64) and img.mode == "RGB"
    with pytest.raises(ValueError, match="same length"):
        save_overlays(rgb, maps, tmp_path, ["only_one"])
