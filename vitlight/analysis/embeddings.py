"""What a ViT's embeddings learn, from its weights alone (ViT paper, Dosovitskiy et al. 2021, Fig. 7 left and centre).

Both functions take a timm ``VisionTransformer`` (``vit_*``, ``deit_*``, register-token ViTs,
any patch size) or a vitlight task that holds one as ``.backbone`` (compiled or not).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["patch_embedding_components", "patch_embedding_pca", "position_embedding_similarity", "vit_of"]


def vit_of(model: nn.Module) -> nn.Module:
    """The timm model inside a vitlight task (``.backbone``), unwrapped from torch.compile."""
    inner = getattr(model, "backbone", model)
    return getattr(inner, "_orig_mod", inner)


def _name(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return str(cfg.get("architecture") or type(model).__name__) if isinstance(cfg, dict) else type(model).__name__


def _patch_filters(model: nn.Module) -> Tensor:
    """The linear patch embedding as a float64 matrix (D, C*P*P): one row per embedding dimension."""
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    if not isinstance(proj, nn.Conv2d) or tuple(proj.kernel_size) != tuple(proj.stride):
        raise ValueError(
            f"{_name(model)} has no linear patch embedding (patch_embed.proj, a Conv2d with stride = kernel)"
        )
    return proj.weight.detach().double().flatten(1).cpu()


def patch_embedding_pca(model: nn.Module, k: int = 28) -> tuple[Tensor, Tensor]:
    """The principal components of the patch-embedding filters and the share of variance each explains.

    Each of the D output dimensions of the patch embedding is a filter over one patch (C, P, P);
    the D filters, centred on their mean, are the samples of the PCA.

    Returns:
        components: float32 (k', C, P, P), unit-norm and mutually orthogonal (as flat vectors),
            ordered by explained variance, largest first; each sign is fixed so that its
            largest-magnitude entry is positive. k' = min(k, C*P*P, D).
        explained: float32 (k',), the fraction of the filters' total variance along each component.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1; got {k}")
    vit = vit_of(model)
    filters = _patch_filters(vit)
    shape = tuple(vit.patch_embed.proj.weight.shape[1:])  # (C, P, P)
    centred = filters - filters.mean(dim=0, keepdim=True)
    # rows of vh: the principal directions in filter space; s**2: the variance along each (descending)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    count = min(k, vh.shape[0])
    components = vh[:count]
    peak = components.gather(1, components.abs().argmax(dim=1, keepdim=True))
    components = components * torch.where(peak < 0, -1.0, 1.0).to(components)
    variance = s.square()
    explained = variance[:count] / variance.sum().clamp_min(torch.finfo(variance.dtype).tiny)
    return components.float().reshape(count, *shape), explained.float()


def patch_embedding_components(model: nn.Module, k: int = 28) -> Tensor:
    """The first k principal components of the patch-embedding filters, as images.

    Returns float32 (k', C, P, P) with k' = min(k, C*P*P, D): unit-norm, orthogonal, largest
    explained variance first (see :func:`patch_embedding_pca`). Unitless filter weights; scale
    each to its own range to display it.
    """
    return patch_embedding_pca(model, k)[0]


def _patch_position_embeddings(model: nn.Module) -> Tensor:
    """(N, D) learned position embeddings of the N patch tokens, raster order, prefix tokens left out."""
    pos = getattr(model, "pos_embed", None)
    if not isinstance(pos, Tensor):
        raise ValueError(f"{_name(model)} has no learned absolute position embedding (pos_embed)")
    pos = pos.detach().float().cpu().reshape(-1, pos.shape[-1])
    grid = getattr(getattr(model, "patch_embed", None), "grid_size", None)
    patches = int(grid[0]) * int(grid[1]) if grid is not None else None
    # timm adds prefix-token positions unless no_embed_class; then only the patches have one
    prefix = 0 if getattr(model, "no_embed_class", False) else int(getattr(model, "num_prefix_tokens", 0))
    if patches is not None and pos.shape[0] - prefix != patches:
        raise ValueError(
            f"{_name(model)}: pos_embed has {pos.shape[0]} rows, expected {patches} patches + {prefix} prefix tokens"
        )
    return pos[prefix:]


def position_embedding_similarity(model: nn.Module) -> Tensor:
    """Cosine similarity between the position embeddings of every pair of patch tokens.

    Returns float32 (N, N), N = grid_h * grid_w patch tokens in raster order (row by row),
    prefix tokens (class, register, distillation) left out; unitless, in [-1, 1], symmetric,
    1 on the diagonal. Row ``i`` reshaped to (grid_h, grid_w) is the paper's small map for patch ``i``.
    """
    pos = _patch_position_embeddings(vit_of(model)).double()
    unit = pos / pos.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (unit @ unit.T).float()  # (N, N), computed in float64


def patch_grid(model: nn.Module) -> tuple[int, int]:
    """(grid_h, grid_w) of the model's patch tokens at its configured image size."""
    grid = vit_of(model).patch_embed.grid_size
    return int(grid[0]), int(grid[1])
