"""Attention rollout (Abnar & Zuidema, 2020) for timm ViT / DeiT models with a class token.

Rollout treats each block as a token-mixing matrix ``A_l = norm(fuse_heads(W_l) + I)``
(``I`` stands in for the residual connection, ``norm`` makes every row sum to 1) and
multiplies them in order, ``R = A_L @ ... @ A_1``. The class token's row of ``R``
over the patch tokens says how much each patch flowed into the class token.

timm's ``Attention`` runs fused SDPA, which never materialises the attention
probabilities, so :func:`attention_rollout` recomputes them from each block's own
``qkv`` projection (plus ``q_norm`` / ``k_norm`` and ``scale``) in a forward pre-hook.
Nothing in timm is patched; the hooks are removed and the module modes restored
before returning, even on error.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

HEAD_FUSIONS = ("mean", "max", "min")

__all__ = ["HEAD_FUSIONS", "attention_rollout", "capture_attentions", "rollout_from_attentions"]


def _check_options(head_fusion: str, discard_ratio: float) -> None:
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {', '.join(HEAD_FUSIONS)}; got {head_fusion!r}")
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1); got {discard_ratio!r}")


def _fuse_heads(attn: Tensor, head_fusion: str) -> Tensor:
    # (B, heads, N, N) -> (B, N, N)
    if head_fusion == "mean":
        return attn.mean(dim=1)
    if head_fusion == "max":
        return attn.amax(dim=1)
    return attn.amin(dim=1)


def _discard_lowest(fused: Tensor, discard_ratio: float) -> Tensor:
    """Zero the lowest ``int(N*N*discard_ratio)`` entries of each (N, N) map.

    Entry (0, 0), the class token attending to itself, is never discarded. Ties are
    broken arbitrarily by ``topk``.
    """
    b, n, _ = fused.shape
    k = min(int(n * n * discard_ratio), n * n - 1)
    if k == 0:
        return fused
    flat = fused.reshape(b, n * n).clone()
    # +inf keeps the class token's own entry out of the "lowest" set.
    scores = flat.clone()
    scores[:, 0] = float("inf")
    lowest = scores.topk(k, dim=-1, largest=False).indices
    flat.scatter_(1, lowest, 0.0)
    return flat.reshape(b, n, n)


def rollout_from_attentions(
    attentions: list[Tensor],
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
    num_prefix_tokens: int = 1,
) -> Tensor:
    """Roll attention probabilities through the layers; the pure math of rollout.

    Args:
        attentions: one ``(B, heads, N, N)`` tensor of attention probabilities per
            layer, in forward order. Token 0 must be the class token.
        head_fusion: how heads become one map: ``mean``, ``max`` or ``min``.
        discard_ratio: fraction of each fused ``N*N`` map, lowest values first, set
            to 0 before the identity is added (never the class token's own entry).
        num_prefix_tokens: class / register / distillation tokens at the start of
            the sequence; they are left out of the returned row.

    Returns:
        ``(B, N - num_prefix_tokens)``: the class-token row of the rollout over the
        patch tokens, not rescaled (it sums to at most 1).
    """
    _check_options(head_fusion, discard_ratio)
    if not attentions:
        raise ValueError("attentions is empty; need one (B, heads, N, N) tensor per layer")
    b, _, n, n2 = attentions[0].shape
    if n != n2:
        raise ValueError(f"attention maps must be square (B, heads, N, N); got {tuple(attentions[0].shape)}")
    if not 0 <= num_prefix_tokens < n:
        raise ValueError(f"num_prefix_tokens must be in [0, {n}); got {num_prefix_tokens}")

    eye = torch.eye(n, dtype=torch.float32, device=attentions[0].device)
    rollout = eye.expand(b, n, n)
    for layer, attn in enumerate(attentions):
        if attn.dim() != 4 or attn.shape[0] != b or attn.shape[-2:] != (n, n):
            raise ValueError(f"attention {layer} has shape {tuple(attn.shape)}; expected ({b}, heads, {n}, {n})")
        # float32: half-precision products of many layers underflow.
        fused = _fuse_heads(attn.float(), head_fusion)
        if discard_ratio > 0:
            fused = _discard_lowest(fused, discard_ratio)
        mixed = fused + eye  # identity = the residual path around attention
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        rollout = mixed @ rollout  # later layers multiply from the left
    return rollout[:, 0, num_prefix_tokens:]


def _model_label(model: nn.Module) -> str:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    arch = cfg.get("architecture") if isinstance(cfg, dict) else None
    name = type(model).__name__
    return f"{name} ({arch})" if arch else name


def _attention_probs(attn: nn.Module, x: Tensor, attn_mask: Tensor | None) -> Tensor:
    """Recompute timm ``Attention``'s softmax(q k^T * scale) from its input ``x``."""
    b, n, _ = x.shape
    # (B, N, 3*heads*hd) -> (3, B, heads, N, hd), the same split timm uses.
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, _ = qkv.unbind(0)
    q, k = attn.q_norm(q), attn.k_norm(k)
    logits = (q * attn.scale) @ k.transpose(-2, -1)  # (B, heads, N, N)
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            logits = logits.masked_fill(~attn_mask, float("-inf"))
        else:
            logits = logits + attn_mask
    return logits.softmax(dim=-1)


def _check_model(model: nn.Module) -> None:
    blocks = getattr(model, "blocks", None)
    has_vit_parts = blocks is not None and hasattr(model, "patch_embed")
    if not has_vit_parts or getattr(model, "cls_token", None) is None:
        raise ValueError(f"attention rollout needs a ViT/DeiT with a class token; {_model_label(model)} has none")
    for i, block in enumerate(blocks):
        attn = getattr(block, "attn", None)
        needed = ("qkv", "num_heads", "head_dim", "scale", "q_norm", "k_norm")
        if attn is None or not all(hasattr(attn, a) for a in needed):
            raise ValueError(
                f"attention rollout needs timm's Attention (fused qkv) in every block; "
                f"block {i} of {_model_label(model)} has {type(attn).__name__}"
            )


def _grid_size(model: nn.Module, images: Tensor, num_patches: int) -> tuple[int, int]:
    patch_embed = model.patch_embed
    if getattr(model, "dynamic_img_size", False) and hasattr(patch_embed, "dynamic_feat_size"):
        grid = tuple(patch_embed.dynamic_feat_size(tuple(images.shape[-2:])))
    else:
        grid = tuple(patch_embed.grid_size)
    if grid[0] * grid[1] != num_patches:
        raise ValueError(f"patch grid {grid} does not match the {num_patches} patch tokens the model produced")
    return int(grid[0]), int(grid[1])


def capture_attentions(model: nn.Module, images: Tensor) -> list[Tensor]:
    """Attention probabilities ``(B, heads, N, N)`` of every block, in forward order.

    Runs one eval-mode, ``no_grad`` forward of ``model`` with a pre-hook on each
    ``blocks[i].attn`` that recomputes ``softmax(q k^T * scale)`` from the block's own
    projections. The model's output is unaffected; hooks are removed and every
    submodule's train/eval flag restored afterwards, even on error.
    """
    _check_model(model)
    if images.dim() != 4:
        raise ValueError(f"images must be (B, C, H, W); got shape {tuple(images.shape)}")

    captured: list[Tensor] = []

    def capture(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        x = args[0] if args else kwargs["x"]
        attn_mask = kwargs.get("attn_mask", args[1] if len(args) > 1 else None)
        captured.append(_attention_probs(module, x, attn_mask))

    modes = {m: m.training for m in model.modules()}
    handles = [blk.attn.register_forward_pre_hook(capture, with_kwargs=True) for blk in model.blocks]
    try:
        model.eval()
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
        for module, training in modes.items():
            module.training = training

    if len(captured) != len(model.blocks):
        raise ValueError(f"captured {len(captured)} attention maps for {len(model.blocks)} blocks")
    return captured


def attention_rollout(
    model: nn.Module,
    images: Tensor,
    head_fusion: str = "mean",
    discard_ratio: float = 0.0,
) -> Tensor:
    """Attention rollout maps of a timm ViT / DeiT with a class token.

    Args:
        model: ``timm.models.vision_transformer.VisionTransformer`` (``vit_*``,
            ``deit_*``, distilled DeiT, register-token ViTs) with a class token.
        images: ``(B, C, H, W)`` batch, already normalised for the model.
        head_fusion: ``mean``, ``max`` or ``min`` over heads.
        discard_ratio: fraction in ``[0, 1)`` of lowest attention entries dropped per layer.

    Returns:
        ``(B, grid_h, grid_w)`` float32 maps on the images' device, each divided by
        its own maximum so that it peaks at exactly 1 (absolute rollout values are
        not comparable across images; the shape of the map is what matters).

    The model runs in eval mode under ``no_grad``; every submodule's train/eval
    flag is restored afterwards.
    """
    _check_options(head_fusion, discard_ratio)
    attentions = capture_attentions(model, images)
    num_prefix = int(getattr(model, "num_prefix_tokens", 1))
    row = rollout_from_attentions(attentions, head_fusion, discard_ratio, num_prefix)
    grid_h, grid_w = _grid_size(model, images, row.shape[-1])
    maps = row.reshape(row.shape[0], grid_h, grid_w)
    peak = maps.flatten(1).amax(dim=1).clamp_min(torch.finfo(maps.dtype).tiny)
    return maps / peak[:, None, None]
