"""Optimizer parameter groups shared by every task."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.optim import Optimizer

from vitlight.errors import ConfigError


def no_weight_decay_names(module: nn.Module) -> set[str]:
    """Full names of the parameters that every `no_weight_decay()` below ``module`` lists.

    timm's ViT/DeiT/Swin/PVT list their position embeddings and class tokens there, and
    vitlight's ImageGPT its position embeddings and SOS vector; a name is relative to the
    module that lists it, so it is prefixed with that module's path.
    """
    names: set[str] = set()
    for path, child in module.named_modules():
        listed = getattr(child, "no_weight_decay", None)
        if callable(listed):
            prefix = f"{path}." if path else ""
            names |= {prefix + name for name in listed()}
    known = {name for name, _ in module.named_parameters()}
    return names & known


# segments that wrappers insert into parameter names: FSDP units, activation checkpointing, torch.compile
WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_checkpoint_wrapped_module.", "_orig_mod.")


def plain_name(name: str) -> str:
    """A parameter's name in the model as written, whatever wraps its modules."""
    for segment in WRAPPER_SEGMENTS:
        name = name.replace(segment, "")
    return name


def decay_plan(module: nn.Module) -> dict[str, bool]:
    """Whether each parameter (by plain name) decays, decided on the model as built: timm's rule
    (`param_groups_weight_decay`): biases, every parameter of dim < 2 (norms) and the names in
    `no_weight_decay()` (position embeddings, class/SOS tokens) do not.

    Decided before FSDP wraps the model: with `use_orig_params` and FULL_SHARD every parameter
    becomes a 1-D shard, so a dimension test afterwards would put everything in the no-decay group.
    """
    names = [name for name, _ in module.named_parameters()]
    if any("_fsdp_wrapped_module." in name for name in names):
        raise RuntimeError("weight-decay groups must be decided before FSDP wraps the model (tasks: configure_model)")
    skip = no_weight_decay_names(module)
    return {
        plain_name(name): not (p.ndim <= 1 or name.endswith(".bias") or name in skip)
        for name, p in module.named_parameters()
    }


def weight_decay_groups(module: nn.Module, plan: dict[str, bool] | None = None) -> list[dict]:
    """[decaying group, non-decaying group] (an empty one left out) of the trainable parameters, by
    the names in ``plan`` (`decay_plan`, made before any wrapping; None decides now, on an unwrapped module).

    The decaying group takes the optimizer's own `weight_decay` (the YAML's value); the other
    pins it to 0.
    """
    plan = decay_plan(module) if plan is None else plan
    decay, no_decay = [], []
    for name, parameter in module.named_parameters():
        if not parameter.requires_grad:
            continue
        key = plain_name(name)
        if key not in plan:
            raise RuntimeError(f"parameter {key} was added after the weight-decay groups were decided")
        (decay if plan[key] else no_decay).append(parameter)
    groups = [{"params": decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [group for group in groups if group["params"]]


FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def fused_allowed(optimizer: Optimizer) -> bool:
    """Whether ``optimizer`` can switch to its fused CUDA kernel (one kernel for all parameters, as
    nanoGPT does): it has one (Adam, AdamW, SGD), the user left `fused` unset and asked for neither
    `foreach` nor `differentiable`, and every parameter is a floating CUDA tensor."""
    options = optimizer.defaults
    if "fused" not in options or options["fused"] is not None:
        return False
    if options.get("foreach") or options.get("differentiable"):
        return False
    params = [p for group in optimizer.param_groups for p in group["params"]]
    return bool(params) and all(p.device.type == "cuda" and p.dtype in FUSED_DTYPES for p in params)


# torch.optim's own checks ("Invalid learning rate: -0.1") -> the argument they are about
_TORCH_CHECKS = {
    "learning rate": "lr",
    "weight_decay": "weight_decay",
    "epsilon": "eps",
    "beta": "betas",
    "momentum": "momentum",
}


def build_optimizer(factory: Callable[..., Optimizer], groups: list[dict]) -> Optimizer:
    """The YAML's optimizer over ``groups``, fused where `fused_allowed` says it can be; torch's ValueError for an
    impossible value (a negative or NaN lr, ...) becomes one ConfigError line that names the full config key."""
    try:
        optimizer = factory(groups)
        if fused_allowed(optimizer):
            optimizer = factory(groups, fused=True)  # nothing was stepped yet: the first one is simply dropped
        return optimizer
    except ValueError as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        argument = next((name for words, name in _TORCH_CHECKS.items() if words in message), None)
        key = f"model.init_args.optimizer.init_args.{argument}" if argument else "model.init_args.optimizer"
        raise ConfigError(
            f"{key}: torch.optim refuses it ({message}); give a finite value in the optimizer's range"
        ) from None


def global_batch_size(trainer) -> int:
    """devices x per-device batch x gradient accumulation (nodes included in the trainer's world size)."""
    datamodule = getattr(trainer, "datamodule", None)
    per_device = getattr(datamodule, "batch_size", None)
    if not isinstance(per_device, int):
        raise ConfigError(
            "model.base_batch_size scales the learning rate by the global batch; it needs a vitlight data module"
        )
    return int(trainer.world_size) * per_device * int(trainer.accumulate_grad_batches)


def scale_learning_rate(optimizer: Optimizer, trainer, base_batch_size: int) -> tuple[float, int]:
    """The papers' linear rule, lr = base lr x global batch / base_batch_size (DeiT: 5e-4 at 512;
    ViT: the table's lr at 4096), applied to every group before the schedule reads it.

    Returns (the resolved learning rate of the first group, the global batch size).
    """
    if base_batch_size <= 0:
        raise ConfigError(f"model.base_batch_size must be positive (DeiT: 512, ViT: 4096), got {base_batch_size}")
    batch = global_batch_size(trainer)
    for group in optimizer.param_groups:
        group["lr"] = group["lr"] * batch / base_batch_size
        group.pop("initial_lr", None)  # a schedule built afterwards starts from the scaled rate
    return float(optimizer.param_groups[0]["lr"]), batch
