"""FLOP counting on the meta device: exact small cases, a hand-counted tiny ViT, no side effects."""

from __future__ import annotations

import re

import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from vitlight.analysis.flops import (
    FlopCount,
    count_training_flops,
    forward_flops,
    timm_model_flops,
    train_step_flops,
)

# Tiny ViT: 32x32 image, patch 8 -> 16 patches + 1 class token.
DEPTH, DIM, HEADS, PATCH, IMG, CLASSES = 2, 64, 4, 8, 32, 10
TINY_VIT = dict(img_size=IMG, patch_size=PATCH, depth=DEPTH, embed_dim=DIM, num_heads=HEADS, num_classes=CLASSES)


def tiny_vit_flops_by_hand(batch: int) -> tuple[int, int]:
    """(total, attention-matmul) forward FLOPs; each matmul is 2 * M * K * N."""
    patches = (IMG // PATCH) ** 2
    tokens = patches + 1
    patch_embed = 2 * patches * (3 * PATCH * PATCH) * DIM  # conv == one matmul per patch
    qkv = 2 * tokens * DIM * 3 * DIM
    scores = 2 * HEADS * tokens * tokens * (DIM // HEADS)  # q @ k^T
    mix = 2 * HEADS * tokens * tokens * (DIM // HEADS)  # attn @ v
    proj = 2 * tokens * DIM * DIM
    mlp = 2 * (2 * tokens * DIM * 4 * DIM)  # fc1 + fc2, mlp_ratio 4
    head = 2 * DIM * CLASSES  # class token only
    per_sample = patch_embed + DEPTH * (qkv + scores + mix + proj + mlp) + head
    return batch * per_sample, batch * DEPTH * (scores + mix)


def test_linear_forward_is_exactly_2_b_in_out() -> None:
    batch, d_in, d_out = 5, 7, 3
    layer = nn.Linear(d_in, d_out)
    assert forward_flops(layer, torch.randn(batch, d_in)) == 2 * batch * d_in * d_out


def test_linear_train_step_is_forward_plus_weight_gradient() -> None:
    batch, d_in, d_out = 5, 7, 3
    count = count_training_flops(nn.Linear(d_in, d_out), (batch, d_in))
    # the input needs no gradient, so backward is only grad_W = grad_out^T @ x
    assert count == FlopCount(forward=2 * batch * d_in * d_out, loss=0, backward=2 * batch * d_in * d_out)
    # a hidden layer needs both gradients: train step = 3x forward
    mlp = nn.Sequential(nn.Linear(d_in, d_in), nn.ReLU(), nn.Linear(d_in, d_out))
    fwd = 2 * batch * d_in * d_in + 2 * batch * d_in * d_out
    bwd = 2 * batch * d_in * d_in + 4 * batch * d_in * d_out
    assert train_step_flops(mlp, torch.randn(batch, d_in)) == fwd + bwd


def test_tiny_vit_matches_hand_count() -> None:
    with torch.device("meta"):
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_VIT)
    expected, attention = tiny_vit_flops_by_hand(batch=2)
    got = forward_flops(model, torch.empty(2, 3, IMG, IMG, device="meta"))
    assert abs(got - expected) / expected < 0.05
    assert attention > 0.03 * expected  # the attention matmuls alone exceed the tolerance...
    assert got > expected - attention  # ...so a count that dropped them would fail here


def test_attention_counted_even_where_fused_sdpa_counts_zero() -> None:
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_VIT)
    x = torch.randn(1, 3, IMG, IMG)
    for module in model.modules():  # whatever TIMM_FUSED_ATTN says
        if hasattr(module, "fused_attn"):
            module.fused_attn = True
    # On real CPU tensors, timm's fused path hides the attention matmuls from the counter.
    with FlopCounterMode(display=False) as naive:
        model(x)
    expected, attention = tiny_vit_flops_by_hand(batch=1)
    assert naive.get_total_flops() == expected - attention
    assert forward_flops(model, x) == expected


def test_real_model_untouched_and_flags_restored() -> None:
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_VIT)
    flags = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    weights = {k: v.clone() for k, v in model.state_dict().items()}

    def loss_fn(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, torch.zeros(2, dtype=torch.long, device=logits.device))

    assert train_step_flops(model, torch.randn(2, 3, IMG, IMG), loss_fn) > 0
    assert [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")] == flags
    assert all(p.device.type == "cpu" and p.grad is None for p in model.parameters())
    assert all(torch.equal(v, weights[k]) for k, v in model.state_dict().items())


def test_flags_restored_after_error() -> None:
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, **TINY_VIT)
    flags = [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")]
    with pytest.raises(RuntimeError):
        forward_flops(model, torch.empty(1, 5, IMG, IMG))  # wrong channel count
    assert [m.fused_attn for m in model.modules() if hasattr(m, "fused_attn")] == flags


def test_factory_builds_on_meta_without_memory() -> None:
    # 2.5e9 parameters: 10 GB if it were real, instant on meta.
    built: list[nn.Module] = []

    def factory() -> nn.Module:
        built.append(nn.Linear(50_000, 50_000))
        return built[-1]

    count = count_training_flops(factory, (8, 50_000))
    assert built[0].weight.device.type == "meta"
    assert count.forward == 2 * 8 * 50_000 * 50_000
    assert count.train_step == 2 * count.forward


def test_timm_model_flops() -> None:
    expected, _ = tiny_vit_flops_by_hand(batch=1)
    kwargs = dict(depth=DEPTH, embed_dim=DIM, num_heads=HEADS, patch_size=PATCH)
    assert timm_model_flops("vit_tiny_patch16_224", IMG, CLASSES, **kwargs) == expected
    train = timm_model_flops("vit_tiny_patch16_224", IMG, CLASSES, train_step=True, **kwargs)
    assert 2.5 * expected < train < 3.0 * expected  # ~3x; the patch conv needs no input gradient
    assert timm_model_flops("resnet18", 64, CLASSES, batch_size=2) > 0  # CNN: no img_size kwarg
    with pytest.raises(ValueError, match=re.escape("unknown timm model 'not_a_model'")):
        timm_model_flops("not_a_model", IMG, CLASSES)
