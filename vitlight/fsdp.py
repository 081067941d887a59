"""Lightning's FSDP strategy for the paper-size models (ViT-H, iGPT-XL), set up from YAML.

Each transformer block becomes one FSDP unit (its parameters are gathered for its forward and
backward and sharded otherwise), and its activations can be recomputed in the backward pass.
The block classes are named by import path, so an experiment file can say which they are.
"""

from __future__ import annotations

import importlib
from typing import Literal

from lightning.pytorch.strategies import FSDPStrategy

from vitlight.errors import ConfigError


def import_block(path: str) -> type:
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(
            f"FSDP block class {path!r} cannot be imported; name a module class such as "
            "timm.models.vision_transformer.Block or vitlight.models.igpt_model.Block"
        ) from None


class BlockFSDP(FSDPStrategy):
    """FSDPStrategy with block-level wrapping and optional activation checkpointing per block."""

    def __init__(
        self,
        block_classes: list[str],
        sharding_strategy: Literal["FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD"] = "FULL_SHARD",
        activation_checkpointing: bool = False,
        state_dict_type: Literal["full", "sharded"] = "full",
    ) -> None:
        """
        Args:
            block_classes: import paths of the module classes that become FSDP units (the blocks).
            sharding_strategy: FSDP's sharding (FULL_SHARD: parameters, gradients and optimizer state).
            activation_checkpointing: recompute each block's activations in the backward pass.
            state_dict_type: "full" writes one ordinary checkpoint file (readable by every vitlight
                command); "sharded" writes one shard per rank (faster for the largest models).
        """
        if not block_classes:
            raise ConfigError("trainer.strategy.init_args.block_classes must name at least one block class")
        blocks = {import_block(path) for path in block_classes}
        super().__init__(
            auto_wrap_policy=blocks,
            activation_checkpointing_policy=blocks if activation_checkpointing else None,
            sharding_strategy=sharding_strategy,
            state_dict_type=state_dict_type,
        )
        self.block_classes = blocks
