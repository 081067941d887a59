"""ImageGPT: the model, its configuration and presets, and OpenAI's released weights.

One import path for users: `ImageGPT` and `KVCache` live in `igpt_model`, `IGPTConfig` and
the presets in `igpt_config`, and `from_transformers` (OpenAI's checkpoints in the Hugging
Face format) in `igpt_transformers`.
"""

from vitlight.models.igpt_config import ACTIVATIONS, IGPT_PRESETS, NORM_KINDS, IGPTConfig, igpt_config
from vitlight.models.igpt_model import ImageGPT, KVCache
from vitlight.models.igpt_transformers import HUB_NAMES, HUB_PRESETS, from_transformers

__all__ = [
    "ACTIVATIONS",
    "HUB_NAMES",
    "HUB_PRESETS",
    "IGPT_PRESETS",
    "NORM_KINDS",
    "IGPTConfig",
    "ImageGPT",
    "KVCache",
    "from_transformers",
    "igpt_config",
]
