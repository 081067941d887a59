"""Optimizer set-up shared by the tasks: weight-decay groups by name, fused AdamW where it can run.

CUDA parameters are FakeTensors here (torch's own, no GPU needed): the choice reads only their device and
dtype, and torch's AdamW constructor checks the fused setting against them as it would on a GPU.
"""

from __future__ import annotations

import functools

import pytest
import timm
import torch
from timm.optim import param_groups_weight_decay
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from vitlight.models.igpt import IGPTConfig, ImageGPT
from vitlight.tasks.optim import build_optimizer, decay_plan, fused_allowed, plain_name, weight_decay_groups


def cuda_params(dtype: torch.dtype = torch.float32) -> list[nn.Parameter]:
    return [nn.Parameter(torch.empty(4, 3, device="cuda", dtype=dtype)), nn.Parameter(torch.empty(3, device="cuda"))]


# what LightningCLI hands a task for `optimizer: {class_path: torch.optim.AdamW, init_args: {lr: ...}}`
YAML_ADAMW = functools.partial(torch.optim.AdamW, lr=1e-3, weight_decay=0.05, foreach=None, fused=None)


@pytest.mark.parametrize("factory", [torch.optim.AdamW, torch.optim.Adam, YAML_ADAMW])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_adam_on_cuda_parameters_is_fused(factory, dtype: torch.dtype):
    with FakeTensorMode():
        optimizer = build_optimizer(factory, [{"params": cuda_params(dtype)}])
    assert optimizer.defaults["fused"] is True
    assert type(optimizer) is (factory.func if isinstance(factory, functools.partial) else factory)


def test_fused_is_not_chosen_where_it_cannot_or_should_not_run():
    cpu = [nn.Parameter(torch.zeros(4, 3))]
    assert not fused_allowed(torch.optim.AdamW(cpu))  # CPU: the foreach path, as before
    with FakeTensorMode():
        mixed = [*cuda_params(), nn.Parameter(torch.zeros(2, device="meta"))]
        assert not fused_allowed(torch.optim.AdamW(mixed))  # not every parameter on CUDA
        assert not fused_allowed(torch.optim.AdamW(cuda_params(), fused=False))  # the user said no
        assert not fused_allowed(torch.optim.AdamW(cuda_params(), foreach=True))  # the user chose foreach
        assert not fused_allowed(torch.optim.AdamW(cuda_params(), differentiable=True))
        assert not fused_allowed(torch.optim.RMSprop(cuda_params()))  # no fused kernel
        assert build_optimizer(torch.optim.RMSprop, [{"params": cuda_params()}]).defaults.get("fused") is None


def test_plain_names_drop_what_wrappers_insert():
    wrapped = "model.blocks.0._fsdp_wrapped_module._checkpoint_wrapped_module.attn.qkv.weight"
    assert plain_name(wrapped) == "model.blocks.0.attn.qkv.weight"
    assert plain_name("backbone._orig_mod.head.bias") == "backbone.head.bias"


@pytest.mark.parametrize(
    "build",
    [
        lambda: timm.create_model(
            "vit_tiny_patch16_224", img_size=16, patch_size=4, depth=2, embed_dim=32, num_heads=2
        ),
        lambda: ImageGPT(IGPTConfig(vocab_size=8, n_positions=16, n_layer=2, n_embd=32, n_head=2)),
    ],
)
def test_groups_by_name_are_timms_groups(build):
    model = build()
    ours = weight_decay_groups(model, decay_plan(model))
    listed = model.no_weight_decay() if hasattr(model, "no_weight_decay") else ()
    theirs = {
        g["weight_decay"]: g["params"]
        for g in param_groups_weight_decay(model, weight_decay=1.0, no_weight_decay_list=listed)
    }
    assert [id(p) for p in ours[0]["params"]] == [id(p) for p in theirs[1.0]]
    assert [id(p) for p in ours[1]["params"]] == [id(p) for p in theirs[0.0]]
    assert ours[1]["weight_decay"] == 0.0 and "weight_decay" not in ours[0]


def test_a_parameter_unknown_to_the_plan_is_refused():
    model = nn.Sequential(nn.Linear(2, 2))
    plan = decay_plan(model)
    model.append(nn.Linear(2, 2))
    with pytest.raises(RuntimeError, match="1.weight was added after"):
        weight_decay_groups(model, plan)
