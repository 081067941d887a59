"""Count model FLOPs per forward and per training step, on the meta device.

``torch.utils.flop_counter.FlopCounterMode`` counts matmuls and convolutions as
``2 * M * N * K`` (one multiply + one add); elementwise ops, norms, softmax and
losses count as zero. Everything runs on ``torch.device("meta")``: parameters,
buffers and inputs are shape-only, so counting a 10-billion-parameter model costs
no memory, and a model passed in with real weights is never touched (its state is
swapped for meta stand-ins with ``torch.func.functional_call``).

Fused attention kernels are counted as zero on CPU, so counting forces the math
path twice over: ``sdpa_kernel(SDPBackend.MATH)`` and ``fused_attn = False`` on
every timm module that has the flag (restored afterwards, even on error).

Training FLOPs: backward costs about twice the forward (a gradient w.r.t. the input
and one w.r.t. the weights per matmul), so a train step is about 3x the forward
(slightly less, as the first layer needs no input gradient). The optimizer step is
elementwise and not counted.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "FlopCount",
    "count_training_flops",
    "forward_flops",
    "math_attention",
    "timm_model_flops",
    "train_step_flops",
]

LossFn = Callable[[Any], Tensor]


@dataclass(frozen=True)
class FlopCount:
    """FLOPs of one step on the whole batch."""

    forward: int
    loss: int
    backward: int

    @property
    def train_step(self) -> int:
        """Forward + loss + backward; about ``3 * forward``."""
        return self.forward + self.loss + self.backward


@contextmanager
def math_attention(model: nn.Module) -> Iterator[None]:
    """Route attention through plain matmuls so that FlopCounterMode sees them."""
    saved = [(m, m.fused_attn) for m in model.modules() if hasattr(m, "fused_attn")]
    try:
        for module, _ in saved:
            module.fused_attn = False
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        for module, fused in saved:
            module.fused_attn = fused


def sum_outputs(output: Any) -> Tensor:
    """Default loss: the sum of every tensor in the output (the backward cost of the
    model does not depend on which scalar loss it differentiates)."""
    if isinstance(output, Tensor):
        return output.float().sum()
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (list, tuple)):
        parts = [sum_outputs(o) for o in output if isinstance(o, (Tensor, list, tuple, dict))]
        if parts:
            return torch.stack(parts).sum()
    raise ValueError(f"cannot make a loss from a model output of type {type(output).__name__}; pass loss_fn")


def _meta_state(model: nn.Module) -> dict[str, Tensor]:
    # Shape-only copies; requires_grad kept so that frozen parameters get no gradient.
    state = {
        name: torch.empty_like(p, device="meta").requires_grad_(p.requires_grad)
        for name, p in model.named_parameters(remove_duplicate=False)
    }
    state.update({name: torch.empty_like(b, device="meta") for name, b in model.named_buffers(remove_duplicate=False)})
    return state


def _count(model: nn.Module, example_input: Tensor, loss_fn: LossFn | None) -> FlopCount:
    """Forward (and, with ``loss_fn``, loss + backward) FLOPs in the model's current mode."""
    if not isinstance(example_input, Tensor):
        raise ValueError(f"example_input must be a Tensor; got {type(example_input).__name__}")
    x = example_input.detach().to("meta")
    state = _meta_state(model)
    with math_attention(model), torch.set_grad_enabled(loss_fn is not None):
        with FlopCounterMode(display=False) as fwd:
            output = functional_call(model, state, (x,))
        if loss_fn is None:
            return FlopCount(forward=fwd.get_total_flops(), loss=0, backward=0)
        with FlopCounterMode(display=False) as loss_counter:
            loss = loss_fn(output)
        with FlopCounterMode(display=False) as bwd:
            loss.backward()
    return FlopCount(fwd.get_total_flops(), loss_counter.get_total_flops(), bwd.get_total_flops())


def forward_flops(model: nn.Module, example_input: Tensor) -> int:
    """FLOPs of one forward pass on ``example_input`` (its batch size included)."""
    return _count(model, example_input, None).forward


def train_step_flops(model: nn.Module, example_input: Tensor, loss_fn: LossFn | None = None) -> int:
    """FLOPs of forward + loss + backward, about ``3 * forward_flops``.

    ``loss_fn`` maps the model output to a scalar (close over targets if it needs
    them); by default the output is summed. Counted in the model's current train/eval
    mode, so call ``model.train()`` first to match training.
    """
    return _count(model, example_input, loss_fn or sum_outputs).train_step


def count_training_flops(
    model: nn.Module | Callable[[], nn.Module],
    input_shape: tuple[int, ...],
    loss_fn: LossFn | None = None,
    dtype: torch.dtype = torch.float32,
) -> FlopCount:
    """Forward and train-step FLOPs for an input of ``input_shape`` (batch included).

    Args:
        model: a module, or a zero-argument factory; a factory is called under
            ``torch.device("meta")`` so that even huge models allocate nothing. A
            factory-built model is counted in train mode.
        input_shape: e.g. ``(batch, 3, 224, 224)``.
        loss_fn: output -> scalar; defaults to summing the output.
        dtype: input dtype.
    """
    if not isinstance(model, nn.Module):
        with torch.device("meta"):
            model = model()
        if not isinstance(model, nn.Module):
            raise ValueError(f"model factory must return an nn.Module; got {type(model).__name__}")
        model.train()
    example_input = torch.empty(input_shape, dtype=dtype, device="meta")
    return _count(model, example_input, loss_fn or sum_outputs)


def timm_model_flops(
    name: str,
    img_size: int,
    num_classes: int,
    in_chans: int = 3,
    batch_size: int = 1,
    train_step: bool = False,
    **model_kwargs: Any,
) -> int:
    """FLOPs of timm model ``name`` on a ``(batch_size, in_chans, img_size, img_size)`` input.

    Forward FLOPs by default; forward + backward with ``train_step=True``.
    ``model_kwargs`` go to ``timm.create_model`` (e.g. ``depth``, ``embed_dim``).
    ``img_size`` is passed to the model only if it accepts it (CNNs do not).
    """
    import timm  # local: keeps `import vitlight.analysis.flops` light

    if not timm.is_model(name.split(".")[0]):  # "vit_base_patch16_224.augreg_in21k" -> architecture
        raise ValueError(f"unknown timm model {name!r}; see timm.list_models()")

    def build() -> nn.Module:
        kwargs: dict[str, Any] = {"pretrained": False, "num_classes": num_classes, "in_chans": in_chans}
        try:
            return timm.create_model(name, img_size=img_size, **kwargs, **model_kwargs)
        except TypeError as err:
            if "img_size" not in str(err):
                raise
            return timm.create_model(name, **kwargs, **model_kwargs)

    counts = count_training_flops(build, (batch_size, in_chans, img_size, img_size))
    return counts.train_step if train_step else counts.forward
