"""The ViT paper's Fig. 7 analyses on hand-computed cases and on real timm ViTs."""

from __future__ import annotations

import math

import pytest
import timm
import torch
from torch import nn

import vitlight.analysis as analysis
from vitlight.analysis.attention_distance import mean_distance_from_attentions, patch_distances


def tiny_vit(**kwargs) -> nn.Module:
    torch.manual_seed(0)
    args = dict(pretrained=False, img_size=16, patch_size=4, depth=2, embed_dim=32, num_heads=2, num_classes=3)
    return timm.create_model("vit_tiny_patch16_224", **{**args, **kwargs}).eval()


class Task(nn.Module):
    """Stands in for a vitlight task: the ViT is its `.backbone`."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone


def test_the_functions_are_importable_from_the_package():
    for name in (
        "patch_embedding_components",
        "position_embedding_similarity",
        "mean_attention_distance",
        "attention_rollout",
    ):
        assert callable(getattr(analysis, name))


# ----- position-embedding similarity ----------------------------------------------------
@pytest.mark.parametrize(
    "kwargs, patches",
    [
        ({}, 16),  # class token, 4x4 grid
        ({"reg_tokens": 2, "no_embed_class": True}, 16),  # prefix tokens without positions
        ({"img_size": 24, "patch_size": 8, "class_token": False, "global_pool": "avg"}, 9),
    ],
)
def test_similarity_has_a_unit_diagonal_is_symmetric_and_leaves_prefix_tokens_out(kwargs, patches):
    model = tiny_vit(**kwargs)
    similarity = analysis.position_embedding_similarity(Task(model))
    assert similarity.shape == (patches, patches) and similarity.dtype == torch.float32
    assert torch.allclose(similarity.diagonal(), torch.ones(patches), atol=1e-6)
    assert torch.allclose(similarity, similarity.T, atol=1e-6)
    assert similarity.abs().max() <= 1 + 1e-6


def test_similarity_by_hand():
    model = tiny_vit(img_size=8, patch_size=4)  # 2x2 grid + class token: pos_embed (1, 5, 32)
    pos = torch.zeros(1, 5, 32)
    pos[0, 0, 5] = 7.0  # the class token's position: must be left out
    pos[0, 1, 0] = 1.0  # patch (0, 0): e0
    pos[0, 2, 0], pos[0, 2, 1] = 1.0, 1.0  # patch (0, 1): e0 + e1, 45 degrees from e0
    pos[0, 3, 1] = 3.0  # patch (1, 0): e1 (length does not matter)
    pos[0, 4, 0] = -2.0  # patch (1, 1): -e0
    with torch.no_grad():
        model.pos_embed.copy_(pos)
    r = 1 / math.sqrt(2)
    expected = torch.tensor([[1, r, 0, -1], [r, 1, r, -r], [0, r, 1, 0], [-1, -r, 0, 1]], dtype=torch.float32)
    assert torch.allclose(analysis.position_embedding_similarity(model), expected, atol=1e-6)


def test_similarity_refuses_a_model_without_position_embeddings():
    with pytest.raises(ValueError, match="position embedding"):
        analysis.position_embedding_similarity(tiny_vit(pos_embed="none"))


# ----- patch-embedding components -------------------------------------------------------
@pytest.mark.parametrize("patch_size, k, expected", [(4, 28, 28), (2, 28, 12), (4, 5, 5)])
def test_components_are_orthonormal_and_ordered_by_explained_variance(patch_size, k, expected):
    model = tiny_vit(patch_size=patch_size)
    components = analysis.patch_embedding_components(model, k=k)
    assert components.shape == (expected, 3, patch_size, patch_size)  # at most C*P*P of them
    flat = components.double().flatten(1)
    assert torch.allclose(flat @ flat.T, torch.eye(expected, dtype=torch.float64), atol=1e-5)
    # variance of the (centred) filters along each component, computed here from the weights
    filters = model.patch_embed.proj.weight.detach().double().flatten(1)
    variance = ((filters - filters.mean(0)) @ flat.T).var(dim=0)
    assert torch.all(variance[:-1] >= variance[1:] - 1e-9)
    _, explained = analysis.patch_embedding_pca(model, k=k)
    assert torch.allclose(explained.double(), variance / (filters - filters.mean(0)).var(dim=0).sum(), rtol=1e-4)


def test_components_by_hand_find_the_one_direction_the_filters_vary_along():
    model = tiny_vit(patch_size=2, embed_dim=32)
    direction = torch.zeros(3, 2, 2)
    direction[0, 0, 0], direction[2, 1, 1] = 0.6, -0.8  # unit norm; its largest entry is negative
    offset = torch.full((3, 2, 2), 0.25)
    scales = torch.linspace(-2, 2, 32).view(32, 1, 1, 1)
    with torch.no_grad():
        model.patch_embed.proj.weight.copy_(offset + scales * direction)
    components, explained = analysis.patch_embedding_pca(model, k=3)
    assert torch.allclose(components[0], -direction, atol=1e-5)  # sign: the largest-magnitude entry is positive
    assert explained[0] == pytest.approx(1.0, abs=1e-6) and explained[1:].abs().max() < 1e-6


# ----- mean attention distance ----------------------------------------------------------
def test_patch_distances_in_pixels():
    distances = patch_distances((2, 3), (4, 5))
    assert distances[0, 1] == pytest.approx(5) and distances[0, 3] == pytest.approx(4)
    assert distances[0, 5] == pytest.approx(math.hypot(4, 10))


def test_attention_on_itself_only_is_distance_zero():
    prefix, grid = 1, (3, 3)
    attention = torch.eye(prefix + 9).expand(2, 4, 10, 10)  # (B, heads, T, T)
    distance = mean_distance_from_attentions([attention, attention], grid, (4, 4), prefix)
    assert distance.shape == (2, 4) and torch.count_nonzero(distance) == 0


def test_uniform_attention_on_a_2x2_grid_gives_the_analytic_mean():
    # every query sees distances 0, P, P, P*sqrt(2) to the four patches: mean P * (2 + sqrt 2) / 4
    attention = torch.full((3, 2, 5, 5), 1 / 5)  # uniform over the class token and the 4 patches
    distance = mean_distance_from_attentions([attention], (2, 2), (4, 4), num_prefix_tokens=1) / 3
    assert torch.allclose(distance, torch.full((1, 2), 4 * (2 + math.sqrt(2)) / 4, dtype=torch.float64))


def test_two_patches_by_hand_with_the_prefix_weight_renormalised_away():
    # a 1x2 grid of 4-pixel patches: centres 4 pixels apart; token 0 is the class token
    attention = torch.tensor(
        [
            [
                [
                    [1.0, 0.0, 0.0],
                    [0.2, 0.2, 0.6],  # patch 0: 0.25 on itself, 0.75 on patch 1 after renormalising -> 3 px
                    [0.5, 0.5, 0.0],  # patch 1: all on patch 0 -> 4 px
                ]
            ]
        ]
    )
    distance = mean_distance_from_attentions([attention], (1, 2), (4, 4), num_prefix_tokens=1)
    assert distance.item() == pytest.approx((3 + 4) / 2)


def test_mean_attention_distance_of_a_real_vit_with_uniform_attention():
    model = tiny_vit(img_size=8, patch_size=4, depth=3, num_heads=2)  # 2x2 grid
    with torch.no_grad():
        for block in model.blocks:  # zero queries and keys: every attention row is uniform
            block.attn.qkv.weight[: 2 * 32].zero_()
            block.attn.qkv.bias[: 2 * 32].zero_()
    images = torch.randn(5, 3, 8, 8)
    distance = analysis.mean_attention_distance(Task(model), images, batch_size=2)
    assert distance.shape == (3, 2) and distance.dtype == torch.float32
    assert torch.allclose(distance, torch.full((3, 2), 2 + math.sqrt(2)), atol=1e-5)


def test_mean_attention_distance_is_batch_independent_and_bounded():
    model = tiny_vit(reg_tokens=3, depth=2, num_heads=4)  # 4 prefix tokens
    images = torch.randn(6, 3, 16, 16)
    whole = analysis.mean_attention_distance(model, images, batch_size=64)
    split = analysis.mean_attention_distance(model, images, batch_size=4)
    assert whole.shape == (2, 4) and torch.allclose(whole, split, atol=1e-5)
    assert whole.min() > 0 and whole.max() < patch_distances((4, 4), (4, 4)).max()
    assert model.training is False
