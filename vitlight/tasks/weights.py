"""Loading backbone weights for fine-tuning: vitlight checkpoints, timm/safetensors files, Google's .npz.

Adapts what the papers' fine-tuning changes: position embeddings are interpolated to
the new resolution, and a classifier head of another size is dropped (re-initialised).
The ViT paper's original checkpoints (`ViT-B_16.npz`, big_vision/augreg `.npz`) are read by
timm's own `VisionTransformer.load_pretrained`, which does the same two adaptations.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
from torch import nn

from vitlight.errors import CheckpointError

log = logging.getLogger(__name__)

VITLIGHT_PREFIXES = ("backbone.", "model.", "module.", "_orig_mod.")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Reads tensors from a .safetensors file, a timm .pth/.bin, or a vitlight/Lightning .ckpt (weights_only)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(
            f"cannot read checkpoint {str(path)!r}: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
        ) from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"checkpoint {str(path)!r} holds no state dict of tensors")
    return {_strip_prefix(key): value for key, value in state.items() if not key.startswith("ema.")}


def without_compile_wrapper(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """State-dict keys as the plain module has them: checkpoints of runs that replaced a submodule by
    `torch.compile(module)` (vitlight before it compiled in place) carry `_orig_mod.` in their keys."""
    return {key.replace("._orig_mod.", ".").removeprefix("_orig_mod."): value for key, value in state_dict.items()}


def _strip_prefix(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in VITLIGHT_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _resample_position_embedding(weight: torch.Tensor, target: torch.Tensor, prefix_tokens: int) -> torch.Tensor:
    from timm.layers import resample_abs_pos_embed

    old_grid = int(math.isqrt(weight.shape[1] - prefix_tokens))
    new_grid = int(math.isqrt(target.shape[1] - prefix_tokens))
    if old_grid * old_grid + prefix_tokens != weight.shape[1] or new_grid * new_grid + prefix_tokens != target.shape[1]:
        raise CheckpointError(
            f"position embeddings of {weight.shape[1]} tokens cannot be resampled to {target.shape[1]}"
        )
    log.info("interpolating position embeddings from a %dx%d to a %dx%d grid", old_grid, old_grid, new_grid, new_grid)
    return resample_abs_pos_embed(weight, (new_grid, new_grid), (old_grid, old_grid), num_prefix_tokens=prefix_tokens)


def load_npz_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Google's ViT .npz (original or big_vision layout) into a timm ViT; returns the head names left at init."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist or is not a file")
    if not callable(getattr(model, "load_pretrained", None)) or not hasattr(model, "pos_embed"):
        raise CheckpointError(
            f".npz checkpoints are read for timm VisionTransformer models, not {type(model).__name__}; use .safetensors or .pth"
        )
    head_names = _head_parameter_names(model)
    before = {name: p.detach().clone() for name, p in model.named_parameters() if name in head_names}
    try:
        model.load_pretrained(str(path))  # timm's reader: interpolates pos_embed, keeps a head of another size
    except (KeyError, ValueError, RuntimeError, OSError) as error:
        detail = (str(error).splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"cannot load {str(path)!r} into {type(model).__name__} ({type(error).__name__}: {detail}); is it a ViT .npz of this size?"
        ) from None
    kept = [name for name, p in model.named_parameters() if name in before and torch.equal(before[name], p)]
    if kept:
        log.info("new classifier head (checkpoint head has another number of classes): %s", ", ".join(kept))
    return sorted(kept)


def load_backbone_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Loads `path` into a timm model; returns the names of parameters left at their fresh init (the head)."""
    if Path(path).suffix == ".npz":
        return load_npz_weights(model, path)
    source = read_state_dict(path)
    target = model.state_dict()
    head_names = _head_parameter_names(model)
    prefix_tokens = int(getattr(model, "num_prefix_tokens", 1))
    adapted: dict[str, torch.Tensor] = {}
    reinitialised: list[str] = []
    mismatched: list[str] = []
    for name, weight in source.items():
        if name not in target:
            continue
        wanted = target[name]
        if weight.shape == wanted.shape:
            adapted[name] = weight
        elif name.endswith("pos_embed") and weight.dim() == 3:
            adapted[name] = _resample_position_embedding(weight, wanted, prefix_tokens)
        elif name in head_names:
            reinitialised.append(name)
        else:
            mismatched.append(f"{name} {tuple(weight.shape)} vs model {tuple(wanted.shape)}")
    if mismatched:
        raise CheckpointError(f"checkpoint {str(path)!r} does not fit the model: {'; '.join(mismatched[:3])}")
    missing = sorted(set(target) - set(adapted) - set(head_names))
    if missing:
        raise CheckpointError(
            f"checkpoint {str(path)!r} lacks {len(missing)} of the model's weights (first: {', '.join(missing[:3])}); "
            f"is it for another architecture?"
        )
    model.load_state_dict(adapted, strict=False)
    if reinitialised:
        log.info("new classifier head (checkpoint head has another number of classes): %s", ", ".join(reinitialised))
    return reinitialised + sorted(set(head_names) - set(adapted) - set(reinitialised))


def _head_parameter_names(model: nn.Module) -> set[str]:
    """Names of the classifier's own weights (timm's `get_classifier()`)."""
    classifier = model.get_classifier() if hasattr(model, "get_classifier") else None
    if classifier is None:
        return set()
    ids = {id(p) for p in classifier.parameters()}
    return {name for name, p in model.named_parameters() if id(p) in ids}
