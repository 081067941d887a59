"""Optimizer parameter groups shared by every task."""

from __future__ import annotations

from timm.optim import param_groups_weight_decay
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


def weight_decay_groups(module: nn.Module) -> list[dict]:
    """[decaying group, non-decaying group] by timm's `param_groups_weight_decay`: biases, norms
    (every parameter of dim < 2) and the names in `no_weight_decay()` (position embeddings,
    class/SOS tokens) do not decay.

    The decaying group takes the optimizer's own `weight_decay` (the YAML's value); the other
    pins it to 0.
    """
    groups = param_groups_weight_decay(module, weight_decay=1.0, no_weight_decay_list=no_weight_decay_names(module))
    decay = [{"params": g["params"]} for g in groups if g["weight_decay"]]  # the optimizer's own value
    no_decay = [g for g in groups if not g["weight_decay"]]
    return decay + no_decay


# torch.optim's own checks ("Invalid learning rate: -0.1") -> the argument they are about
_TORCH_CHECKS = {
    "learning rate": "lr",
    "weight_decay": "weight_decay",
    "epsilon": "eps",
    "beta": "betas",
    "momentum": "momentum",
}


def build_optimizer(factory, params) -> Optimizer:
    """`factory(params)`; torch's ValueError for an impossible value (a negative or NaN lr, ...) becomes one
    ConfigError line that names the full config key."""
    try:
        return factory(params)
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
