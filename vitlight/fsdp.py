"""Lightning's FSDP strategy for the paper-size models (ViT-H, iGPT-XL), set up from YAML.

Each transformer block becomes one FSDP unit (its parameters are gathered for its forward and
backward and sharded otherwise), and its activations can be recomputed in the backward pass.
The block classes are named by import path, so an experiment file can say which they are.

Two things Lightning's FSDPStrategy leaves out, added here:
- gradient clipping by global norm (`gradient_clip_algorithm: norm`, the ViT paper's clip at 1):
  Lightning's FSDP precision refuses it because it has no handle on the root FSDP module, whose
  `clip_grad_norm_` reduces the shards' norms over every rank; this strategy gives it one.
- a model built on the meta device (no memory; `PixelPretrainer(empty_init=True)`) is materialised
  one FSDP unit at a time on this rank's device and initialised by the model's own rule (the
  `init_module_parameters(module)` method of the module that owns it), so no rank ever holds the
  whole model, and the weights start as they would have without FSDP (iGPT's N(0, 0.02), not
  PyTorch's defaults).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, Literal

import torch
from lightning.fabric.strategies.fsdp import _move_torchmetrics_to_device, _setup_activation_checkpointing
from lightning.pytorch.plugins.precision import FSDPPrecision
from lightning.pytorch.strategies import FSDPStrategy
from torch import nn
from torch.distributed.fsdp import FullyShardedDataParallel
from torch.optim import Optimizer

from vitlight.errors import ConfigError

INIT_HOOK = "init_module_parameters"  # (module) -> None: initialises that module's own parameters


def import_block(path: str) -> type:
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError):
        raise ConfigError(
            f"FSDP block class {path!r} cannot be imported; name a module class such as "
            "timm.models.vision_transformer.Block or vitlight.models.igpt_model.Block"
        ) from None


class ShardedNormClipping(FSDPPrecision):
    """FSDPPrecision that clips by the global norm over every rank's shards (FSDP's `clip_grad_norm_`)."""

    def __init__(self, precision: Any, scaler: Any = None) -> None:
        super().__init__(precision, scaler)
        self.root: nn.Module | None = None  # the root FSDP module, set when the strategy wraps the model
        self.last_norm: torch.Tensor | None = None  # the global norm before the last clip

    def clip_grad_by_norm(self, optimizer: Optimizer, clip_val: int | float) -> None:
        if self.root is None:
            raise RuntimeError("norm clipping under FSDP needs the wrapped model; the strategy has not set it up")
        # a collective: every rank calls it (Lightning clips on all ranks), each with its own shards
        self.last_norm = self.root.clip_grad_norm_(clip_val)


def owners_of(model: nn.Module) -> dict[nn.Module, Callable[[nn.Module], None]]:
    """Each submodule -> the `init_module_parameters` of the innermost module above it that has one."""
    owners: dict[nn.Module, Callable[[nn.Module], None]] = {}

    def visit(module: nn.Module, init: Callable[[nn.Module], None] | None) -> None:
        hook = getattr(module, INIT_HOOK, None)
        init = hook if callable(hook) else init
        if init is not None:
            owners[module] = init
        for child in module.children():
            visit(child, init)

    visit(model, None)
    return owners


def has_meta_state(module: nn.Module) -> bool:
    own = [*module.parameters(recurse=False), *module.buffers(recurse=False)]
    return any(t.is_meta for t in own)


class BlockFSDP(FSDPStrategy):
    """FSDPStrategy with block-level wrapping, optional activation checkpointing per block,
    global-norm gradient clipping, and unit-by-unit materialisation of meta-device models."""

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
            param_init_fn=self._materialise,  # FSDP calls it only for modules that are on the meta device
        )
        self.block_classes = blocks
        self._initialisers: dict[nn.Module, Callable[[nn.Module], None]] = {}

    @FSDPStrategy.precision_plugin.setter
    def precision_plugin(self, plugin: Any) -> None:
        # the accelerator connector hands over a plain FSDPPrecision; the same precision, able to clip by norm
        if isinstance(plugin, FSDPPrecision) and not isinstance(plugin, ShardedNormClipping):
            plugin = ShardedNormClipping(plugin.precision, plugin.scaler)
        FSDPStrategy.precision_plugin.fset(self, plugin)

    def _setup_model(self, model: nn.Module) -> nn.Module:
        """Lightning's wrapping (FSDP by block, metrics to the device, then activation checkpointing), with
        the device given as a torch.device: Lightning passes its index, None on a CPU, which torch's FSDP
        reads as "find an accelerator" and refuses, so FSDP over gloo on CPUs (the tests) needs this."""
        if any(isinstance(m, FullyShardedDataParallel) for m in model.modules()):
            return super()._setup_model(model)  # wrapped by the user: Lightning's own path
        self._initialisers = owners_of(model)  # found before wrapping, while the tree is the model's own
        wrapped = FullyShardedDataParallel(
            module=model,
            cpu_offload=self.cpu_offload,
            mixed_precision=self.mixed_precision_config,
            sharding_strategy=self.sharding_strategy,
            device_id=self.root_device,
            **self.kwargs,
        )
        self._initialisers = {}
        _move_torchmetrics_to_device(wrapped, self.root_device)
        _setup_activation_checkpointing(wrapped, self._activation_checkpointing_kwargs)
        if isinstance(self.precision_plugin, ShardedNormClipping):
            self.precision_plugin.root = wrapped
        return wrapped

    def _materialise(self, module: nn.Module) -> None:
        """Allocates one module's own meta parameters on this rank's device and initialises them as its
        model does; FSDP calls this for every module of one unit, then shards that unit."""
        if not has_meta_state(module):
            return
        module.to_empty(device=self.root_device, recurse=False)
        init = self._initialisers.get(module)
        with torch.no_grad():
            if init is not None:
                init(module)
            elif callable(getattr(module, "reset_parameters", None)):
                module.reset_parameters()
            else:
                raise ConfigError(
                    f"{type(module).__name__} was built on the meta device but neither its model nor itself says how "
                    f"to initialise it (define {INIT_HOOK}(module) on the model, or build it without empty_init)"
                )
