"""Building timm backbones: name checks, image size and channels, the CIFAR stem."""

from __future__ import annotations

import difflib
import math
from typing import Any

import timm
import torch
from torch import nn

from vitlight.errors import ConfigError


def close_model_names(name: str, count: int = 5) -> list[str]:
    return difflib.get_close_matches(name, timm.list_models(), n=count, cutoff=0.6)


def check_model_name(name: str) -> None:
    if not timm.is_model(name):
        close = close_model_names(name)
        hint = f"; close names: {', '.join(close)}" if close else "; see timm.list_models() for valid names"
        raise ConfigError(f"model.model_name {name!r} is not a timm model{hint}")


def accepts_img_size(name: str) -> bool:
    """Whether the architecture takes `img_size` (transformers do, CNNs do not).

    Decided by building the model on the meta device, which costs no memory.
    """
    try:
        with torch.device("meta"):
            timm.create_model(name, pretrained=False, img_size=32, num_classes=2)
    except TypeError:
        return False
    except Exception:  # other errors (e.g. a size the model rejects) still mean the keyword exists
        return True
    return True


def create_backbone(
    name: str,
    num_classes: int,
    image_size: int,
    channels: int,
    model_kwargs: dict[str, Any] | None,
    pretrained: bool = False,
) -> nn.Module:
    check_model_name(name)
    kwargs: dict[str, Any] = {"num_classes": num_classes, "in_chans": channels}
    if accepts_img_size(name):
        kwargs["img_size"] = image_size
    kwargs.update(model_kwargs or {})
    _check_patch_size(kwargs)
    try:
        if not pretrained:
            return timm.create_model(name, **kwargs)
        from vitlight.hub import offline_when_unreachable

        with offline_when_unreachable():
            return timm.create_model(name, pretrained=True, **kwargs)
    except TypeError as error:
        raise ConfigError(_kwargs_problem(name, model_kwargs or {}, error)) from None
    except AssertionError as error:
        raise ConfigError(
            f"timm model {name!r} rejects its arguments {kwargs}: {error or 'assertion failed'}"
        ) from None
    except (RuntimeError, OSError) as error:
        if not pretrained:
            raise
        if "Invalid pretrained tag" in str(error):
            architecture = name.split(".")[0]
            tags = ", ".join(timm.list_pretrained(f"{architecture}.*")[:8]) or "none"
            raise ConfigError(
                f"model.model_name {name!r} has no pretrained weights of that tag; valid: {tags}"
            ) from None
        raise ConfigError(offline_message(name)) from None


def offline_message(name: str) -> str:
    """One line: why timm's weights for `name` could not be fetched, and how to use a local file instead."""
    try:
        hub_id = timm.models.get_pretrained_cfg(name).hf_hub_id or name
    except Exception:
        hub_id = name
    return (
        f"cannot download timm's pretrained weights for {name!r} (offline?); on a connected machine fetch "
        f"https://huggingface.co/{hub_id} (model.safetensors, or Google's .npz) and pass the file as "
        f"model.checkpoint_path with model.pretrained: false"
    )


def _check_patch_size(kwargs: dict[str, Any]) -> None:
    image_size, patch_size = kwargs.get("img_size"), kwargs.get("patch_size")
    if isinstance(image_size, int) and isinstance(patch_size, int) and image_size % patch_size:
        raise ConfigError(
            f"image size {image_size} is not divisible by model.model_kwargs.patch_size {patch_size}; "
            f"use a patch size that divides it (e.g. {', '.join(str(p) for p in range(2, 33) if image_size % p == 0)})"
        )


def apply_cifar_stem(model: nn.Module, channels: int) -> None:
    """Replaces a ResNet's 7x7 stride-2 stem and max-pool by a 3x3 stride-1 conv, for 32x32 images."""
    if hasattr(model, "conv1") and hasattr(model, "maxpool"):  # timm ResNet / ResNeXt
        out_channels = model.conv1.out_channels
        model.conv1 = nn.Conv2d(channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
        return
    stem = getattr(model, "stem", None)
    if isinstance(stem, nn.Sequential) and hasattr(stem, "conv"):  # timm ResNetV2 (BiT)
        conv_class = type(stem.conv)
        stem.conv = conv_class(channels, stem.conv.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        for name in ("pad", "pool"):
            if hasattr(stem, name):
                setattr(stem, name, nn.Identity())
        return
    raise ConfigError(
        f"model.cifar_stem applies to ResNet, ResNeXt and BiT (ResNetV2) models, not {type(model).__name__}"
    )


def is_convnet(model: nn.Module) -> bool:
    """CNNs run faster in channels_last; models with attention layers gain nothing from it."""
    return not any("Attention" in type(module).__name__ for module in model.modules())


def check_empty_init(backbone: nn.Module, name: str) -> None:
    """Only timm's VisionTransformer says how to initialise it one module at a time (its `init_weights`
    is a root step plus one function per module), which materialising a meta-built model needs."""
    from timm.models.vision_transformer import VisionTransformer

    if (
        not isinstance(backbone, VisionTransformer)
        or backbone.fix_init
        or backbone.weight_init_mode not in ("", "reset")
    ):
        raise ConfigError(
            f"model.empty_init builds timm's VisionTransformer on the meta device (ViT-H) with its default init; "
            f"{name} is not one (or its weight_init/fix_init need the whole model); drop empty_init"
        )


def init_vit_module(vit: nn.Module, module: nn.Module) -> None:
    """timm's initialisation (its `init_weights`, the model's own mode) of one module's own parameters."""
    from timm.layers import trunc_normal_
    from timm.models.vision_transformer import get_init_weights_vit

    if module is vit:
        if vit.pos_embed is not None:
            trunc_normal_(vit.pos_embed, std=0.02)
        for token in (vit.cls_token, vit.reg_token):
            if token is not None:
                nn.init.normal_(token, std=1e-6)
        return
    mode = vit.weight_init_mode
    head_bias = -math.log(vit.num_classes) if "nlhb" in mode else 0.0
    get_init_weights_vit(mode, head_bias, needs_reset=True)(module)


def _kwargs_problem(name: str, model_kwargs: dict, error: TypeError) -> str:
    """timm's TypeError in one sentence (not torch's overload list of linspace()), with the model_kwargs given as
    text by their full keys: the usual cause is a text where the model takes a number."""
    reason = str(error).split(", but expected one of")[0].splitlines()[0]
    texts = [
        f"model.init_args.model_kwargs.{key}={value!r}" for key, value in model_kwargs.items() if isinstance(value, str)
    ]
    suspects = f"; given as text: {', '.join(texts)} (give numbers where the model takes them)" if texts else ""
    return f"model.init_args.model_kwargs do not fit timm model {name!r} ({reason}){suspects}"
