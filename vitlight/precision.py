"""The numeric precision a run trains in: bf16 on GPUs, fp32 on CPUs, unless the user says otherwise.

An experiment leaves `trainer.precision` unset (null); at start the CLI resolves it here from the
accelerator the run will use. bf16-mixed keeps fp32 master weights and needs no loss scaling;
GPUs without bf16 (before Ampere) get 16-mixed. On CUDA, fp32 matmuls that remain (outside
autocast) use TF32 ("high"), which Lightning leaves at PyTorch's "highest" otherwise.
"""

from __future__ import annotations

import torch

GPU_ACCELERATORS = ("auto", "gpu", "cuda")


def will_use_cuda(accelerator: object) -> bool:
    """Whether a Trainer with this `accelerator` setting runs on CUDA on this machine."""
    name = accelerator if isinstance(accelerator, str) else type(accelerator).__name__.lower()
    if isinstance(accelerator, str):
        return name.lower() in GPU_ACCELERATORS and torch.cuda.is_available()
    return "cuda" in name


def default_precision(accelerator: object) -> str:
    """bf16-mixed on CUDA (16-mixed where the GPU has no bf16), 32-true elsewhere."""
    if not will_use_cuda(accelerator):
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


def resolve_precision(precision: object, accelerator: object) -> str:
    """An explicit precision always wins; None means the default for the accelerator."""
    if precision is None:
        return default_precision(accelerator)
    return str(precision)


def apply_matmul_precision(accelerator: object) -> str:
    """TF32 for fp32 matmuls on CUDA; returns the setting in force (recorded in summary.json)."""
    if will_use_cuda(accelerator):
        torch.set_float32_matmul_precision("high")
    return torch.get_float32_matmul_precision()
