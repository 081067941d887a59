"""Mean attention distance of every head against depth (ViT paper, Dosovitskiy et al. 2021, Fig. 7 right).

For block l and head h: the attention weight from each patch token q to each patch token k
(prefix tokens left out, the weights renormalised over patch keys), times the Euclidean
distance between the two patches' centres in input pixels, summed over k, averaged over the
queries q and over the images. It is the attention analogue of a CNN's receptive-field size:
a head that only looks at its own patch scores 0; one that spreads evenly over the image
scores about a third of the image side.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vitlight.analysis.attention_rollout import capture_attentions
from vitlight.analysis.embeddings import vit_of

__all__ = ["mean_attention_distance", "mean_distance_from_attentions", "patch_distances"]


def patch_distances(grid: tuple[int, int], patch_size: tuple[int, int]) -> Tensor:
    """float64 (N, N): Euclidean distance in pixels between the centres of patches i and j (raster order)."""
    rows, cols = grid
    ph, pw = patch_size
    y = (torch.arange(rows, dtype=torch.float64) + 0.5) * ph
    x = (torch.arange(cols, dtype=torch.float64) + 0.5) * pw
    centres = torch.stack(torch.meshgrid(y, x, indexing="ij"), dim=-1).reshape(-1, 2)  # (N, 2) as (y, x)
    return torch.cdist(centres, centres)


def mean_distance_from_attentions(
    attentions: list[Tensor], grid: tuple[int, int], patch_size: tuple[int, int], num_prefix_tokens: int
) -> Tensor:
    """The pure computation on attention probabilities; sums, not means, over images.

    Args:
        attentions: one (B, heads, T, T) tensor of attention probabilities per block, T = prefix + N.
        grid: (grid_h, grid_w) patch grid, N = grid_h * grid_w.
        patch_size: (height, width) of one patch in input pixels.
        num_prefix_tokens: class / register / distillation tokens at the start of the sequence.

    Returns:
        float64 (depth, heads): for each block and head the per-image mean distance, summed over
        the B images (divide by B for the mean).
    """
    distances = patch_distances(grid, patch_size)
    patches = distances.shape[0]
    rows = []
    for layer, attention in enumerate(attentions):
        if (
            attention.dim() != 4
            or attention.shape[-1] != num_prefix_tokens + patches
            or attention.shape[-2] != attention.shape[-1]
        ):
            raise ValueError(
                f"attention {layer} has shape {tuple(attention.shape)}; expected (B, heads, {num_prefix_tokens + patches}, "
                f"{num_prefix_tokens + patches}) for {num_prefix_tokens} prefix tokens and a {grid[0]}x{grid[1]} grid"
            )
        patch_to_patch = attention[:, :, num_prefix_tokens:, num_prefix_tokens:].double()  # (B, heads, N, N)
        weights = patch_to_patch / patch_to_patch.sum(dim=-1, keepdim=True).clamp_min(1e-30)
        per_query = (weights * distances.to(weights.device)).sum(dim=-1)  # (B, heads, N) pixels
        rows.append(per_query.mean(dim=-1).sum(dim=0).cpu())  # (heads,)
    return torch.stack(rows)


def mean_attention_distance(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """Mean attention distance of every head of a timm ViT on ``images``.

    Args:
        model: a timm ``VisionTransformer`` with timm's ``Attention`` (fused qkv) in every block,
            any patch size and prefix-token count, or a vitlight task holding one as ``.backbone``.
        images: (B, C, H, W) batch, already normalised for the model.
        batch_size: images per forward pass (memory only; the result does not depend on it).

    Returns:
        float32 (depth, heads), in input pixels: block l, head h's attention-weighted distance
        between query and key patch centres, averaged over patch queries and images. The model
        runs in eval mode under no_grad; its train/eval flags are restored.
    """
    vit = vit_of(model)
    if images.dim() != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be a non-empty (B, C, H, W) batch; got shape {tuple(images.shape)}")
    patch_size = tuple(int(p) for p in vit.patch_embed.patch_size)
    grid = (images.shape[-2] // patch_size[0], images.shape[-1] // patch_size[1])
    prefix = int(getattr(vit, "num_prefix_tokens", 1))
    total = None
    for start in range(0, images.shape[0], batch_size):
        attentions = capture_attentions(vit, images[start : start + batch_size])
        part = mean_distance_from_attentions(attentions, grid, patch_size, prefix)
        total = part if total is None else total + part
    return (total / images.shape[0]).float()
