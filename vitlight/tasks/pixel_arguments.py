"""PixelPretrainer's arguments: their checks and the ImageGPT configuration they describe."""

from __future__ import annotations

from typing import Any

from vitlight.errors import ConfigError
from vitlight.models.igpt import IGPT_PRESETS, IGPTConfig
from vitlight.tasks.pixels import check_palette_settings

# IGPTConfig architecture options per PixelPretrainer.architecture
OPENAI_ARCHITECTURE: dict[str, dict[str, Any]] = {
    "vitlight": {},
    "openai": {"norm": "rmsnorm", "activation": "quick_gelu", "sos_in_token_embedding": True},
}


def check_arguments(h: Any) -> None:
    """One clear error for each PixelPretrainer argument (``h``: its hparams) that cannot work."""
    if h.preset not in IGPT_PRESETS:
        raise ConfigError(f"model.preset {h.preset!r} is not an ImageGPT preset; valid: {', '.join(IGPT_PRESETS)}")
    if h.architecture not in OPENAI_ARCHITECTURE:
        raise ConfigError(f"model.architecture must be one of {', '.join(OPENAI_ARCHITECTURE)}, got {h.architecture!r}")
    if h.architecture == "openai" and h.objective != "autoregressive":
        raise ConfigError(
            "model.architecture 'openai' is autoregressive (its SOS vector is a token row); set model.objective: "
            "autoregressive"
        )
    if h.objective not in ("autoregressive", "bert"):
        raise ConfigError(f"model.objective must be 'autoregressive' or 'bert', got {h.objective!r}")
    if not 0.0 < h.mask_fraction < 1.0:
        raise ConfigError(f"model.mask_fraction must be in (0, 1), got {h.mask_fraction}")
    if h.classifier_weight < 0 or h.generative_weight < 0 or h.classifier_weight + h.generative_weight == 0:
        raise ConfigError(
            f"model.classifier_weight ({h.classifier_weight}) and model.generative_weight ({h.generative_weight}) "
            "must be >= 0 and not both 0"
        )
    if h.classifier_weight > 0 and h.num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2 for a classifier, got {h.num_classes}")
    check_palette_settings(h.palette, h.palette_size, h.channels)
    tokens = h.image_size**2
    if h.n_positions is not None and h.n_positions < tokens:
        raise ConfigError(
            f"data.image_size {h.image_size} makes {tokens} tokens per image, more than model.n_positions="
            f"{h.n_positions}; raise n_positions or lower the image size"
        )


def igpt_config(h: Any) -> IGPTConfig:
    """The ImageGPT shape PixelPretrainer's arguments (``h``: its hparams) ask for."""
    layers, width, heads = IGPT_PRESETS[h.preset]
    try:
        return IGPTConfig(
            vocab_size=h.palette_size,
            n_positions=h.n_positions or h.image_size**2,
            n_layer=h.n_layer or layers,
            n_embd=h.n_embd or width,
            n_head=h.n_head or heads,
            dropout=h.dropout,
            causal=h.objective == "autoregressive",
            **OPENAI_ARCHITECTURE[h.architecture],
        )
    except ValueError as error:
        raise ConfigError(f"model: {error}") from None
