"""Optimizer parameter groups shared by every task."""

from __future__ import annotations

from torch import nn


def weight_decay_groups(module: nn.Module) -> list[dict]:
    """Two groups: weights with two or more dimensions decay; biases, norms, tokens and embeddings of dim < 2 do not.

    The decaying group takes the optimizer's own `weight_decay`; the other pins it to 0.
    """
    decay, no_decay = [], []
    for parameter in module.parameters():
        if not parameter.requires_grad:
            continue
        (decay if parameter.dim() >= 2 else no_decay).append(parameter)
    groups = [{"params": decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
