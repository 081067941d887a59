"""The ViT paper's checkpoints: timm names (offline: one clear line), and local .safetensors, .pth and
Google's .npz files, each into fine-tuning at a new resolution with a new head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from timm.layers import resample_abs_pos_embed

from vitlight.errors import CheckpointError, ConfigError
from vitlight.tasks import ImageClassifier

ARCH = "vit_tiny_patch16_224"
TINY = {"patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2}


def vit(image_size: int, num_classes: int, **kwargs) -> ImageClassifier:
    return ImageClassifier(model_name=ARCH, model_kwargs=TINY, num_classes=num_classes, image_size=image_size, **kwargs)


def source_state() -> dict[str, torch.Tensor]:
    """A pretrained-like tiny ViT at 32 px (4x4 grid) with 21 classes; every tensor random."""
    torch.manual_seed(0)
    model = vit(image_size=32, num_classes=21).backbone
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.5)
    return {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def write_npz(state: dict[str, torch.Tensor], path: Path, depth: int) -> None:
    """The original ViT release's layout (`ViT-B_16.npz`): JAX kernels (in, out), attention kernels
    split per head, written from a timm state dict."""
    a = {k: v.numpy() for k, v in state.items()}
    dim, heads = a["cls_token"].shape[-1], TINY["num_heads"]
    out = {
        "embedding/kernel": a["patch_embed.proj.weight"].transpose(2, 3, 1, 0),  # (D, C, h, w) -> (h, w, C, D)
        "embedding/bias": a["patch_embed.proj.bias"],
        "cls": a["cls_token"],
        "Transformer/posembed_input/pos_embedding": a["pos_embed"],
        "Transformer/encoder_norm/scale": a["norm.weight"],
        "Transformer/encoder_norm/bias": a["norm.bias"],
        "head/kernel": a["head.weight"].T,
        "head/bias": a["head.bias"],
    }
    for i in range(depth):
        b, p = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        attention = b + "MultiHeadDotProductAttention_1/"
        qkv_w, qkv_b = np.split(a[p + "attn.qkv.weight"], 3), np.split(a[p + "attn.qkv.bias"], 3)
        for name, weight, bias in zip(("query", "key", "value"), qkv_w, qkv_b):
            out[attention + f"{name}/kernel"] = weight.T.reshape(dim, heads, dim // heads)
            out[attention + f"{name}/bias"] = bias.reshape(heads, dim // heads)
        out[attention + "out/kernel"] = a[p + "attn.proj.weight"].T.reshape(heads, dim // heads, dim)
        out[attention + "out/bias"] = a[p + "attn.proj.bias"]
        for ours, theirs in (("norm1", "LayerNorm_0"), ("norm2", "LayerNorm_2")):
            out[b + f"{theirs}/scale"], out[b + f"{theirs}/bias"] = a[p + f"{ours}.weight"], a[p + f"{ours}.bias"]
        for r in range(2):
            out[b + f"MlpBlock_3/Dense_{r}/kernel"] = a[p + f"mlp.fc{r + 1}.weight"].T
            out[b + f"MlpBlock_3/Dense_{r}/bias"] = a[p + f"mlp.fc{r + 1}.bias"]
    np.savez(path, **out)


def write(state: dict[str, torch.Tensor], folder: Path, suffix: str) -> Path:
    path = folder / f"vit{suffix}"
    if suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file(state, str(path))
    elif suffix == ".pth":
        torch.save(state, path)
    else:
        write_npz(state, path, TINY["depth"])
    return path


@pytest.mark.parametrize("suffix", [".safetensors", ".pth", ".npz"])
def test_each_format_fine_tunes_at_a_new_resolution_with_a_new_head(tmp_path: Path, suffix: str):
    state = source_state()
    path = write(state, tmp_path, suffix)
    target = vit(image_size=64, num_classes=10, checkpoint_path=str(path)).backbone  # 8x8 grid, 10 classes
    loaded = target.state_dict()
    for name in (
        "patch_embed.proj.weight",
        "cls_token",
        "blocks.0.attn.qkv.weight",
        "blocks.1.attn.proj.weight",
        "blocks.1.mlp.fc2.bias",
        "blocks.0.norm2.weight",
        "norm.bias",
    ):
        assert torch.allclose(loaded[name], state[name], atol=1e-6), name
    assert loaded["pos_embed"].shape == (1, 1 + 64, 32)
    # timm's .npz reader interpolates bilinearly without antialiasing; the state-dict path uses timm's defaults
    how = {"interpolation": "bilinear", "antialias": False} if suffix == ".npz" else {}
    expected = resample_abs_pos_embed(state["pos_embed"], (8, 8), (4, 4), num_prefix_tokens=1, **how)
    assert torch.allclose(loaded["pos_embed"], expected, atol=1e-5)  # interpolated, not re-initialised
    assert loaded["head.weight"].shape == (10, 32)
    assert loaded["head.weight"].std() < 0.1  # timm's fresh head init, not the checkpoint's N(0, 0.5)


def test_npz_keeps_a_head_of_the_same_size(tmp_path: Path):
    state = source_state()
    target = vit(image_size=32, num_classes=21, checkpoint_path=str(write(state, tmp_path, ".npz"))).backbone
    assert torch.allclose(target.head.weight, state["head.weight"], atol=1e-6)


def test_npz_errors_are_one_line(tmp_path: Path):
    np.savez(tmp_path / "other.npz", something=np.zeros(3))
    with pytest.raises(CheckpointError, match="cannot load") as error:
        vit(image_size=32, num_classes=3, checkpoint_path=str(tmp_path / "other.npz"))
    assert "\n" not in str(error.value)
    with pytest.raises(CheckpointError, match="VisionTransformer"):
        ImageClassifier(
            model_name="resnet18",
            num_classes=3,
            image_size=32,
            checkpoint_path=str(write(source_state(), tmp_path, ".npz")),
        )


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224.augreg_in21k", "vit_tiny_patch16_384.augreg_in21k_ft_in1k"])
def test_a_pretrained_name_offline_says_how_to_use_a_file(name: str):
    with pytest.raises(ConfigError, match="model.checkpoint_path") as error:  # conftest sets HF_HUB_OFFLINE
        ImageClassifier(model_name=name, pretrained=True, num_classes=10, image_size=384)
    assert "\n" not in str(error.value) and f"huggingface.co/timm/{name}" in str(error.value)


def test_an_unknown_pretrained_tag_lists_the_valid_ones():
    with pytest.raises(ConfigError, match="augreg_in21k"):
        ImageClassifier(model_name="vit_base_patch16_224.no_such_tag", pretrained=True, num_classes=10, image_size=224)
