"""vitlight.fsdp.BlockFSDP with torch's real FSDP on two CPU processes over gloo (tests/helpers/fsdp_worker.py):
a tiny ImageGPT (compiled per block) and a tiny timm ViT, both built on the meta device, each trained two
clipped steps with activation checkpointing.

Checked against the unwrapped model in this process: weight-decay groups equal name for name although
every parameter is a 1-D shard; the global norm the clip saw equals the unsharded model's on the same
weights and batches; the meta-built models start with their own initialisation, not PyTorch's.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.conftest import ROOT, write_image_folder
from tests.helpers.fsdp_worker import CLIP, IGPT, VIT
from vitlight.models.palette import Palette
from vitlight.tasks import ImageClassifier
from vitlight.tasks.optim import weight_decay_groups
from vitlight.tasks.pixel_pretrain import PixelPretrainer

pytestmark = pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="needs torch.distributed's gloo")
MODELS = ("igpt", "vit")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fsdp")
    images = write_image_folder(out / "images", size=8)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
        "WORLD_SIZE": "2",
        "NODE_RANK": "0",
        "OMP_NUM_THREADS": "1",
        "WANDB_MODE": "disabled",
        "VITLIGHT_CACHE": str(out / "cache"),
        "HF_HUB_OFFLINE": "1",
    }
    ranks = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.helpers.fsdp_worker", str(out), str(images)],
            env={**env, "LOCAL_RANK": str(rank)},
            cwd=out,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for rank in (0, 1)
    ]
    logs = []
    try:
        logs = [rank.communicate(timeout=300)[0] for rank in ranks]
    finally:
        for rank in ranks:
            if rank.poll() is None:
                rank.kill()
    assert all(rank.returncode == 0 for rank in ranks), "\n".join(log[-3000:] for log in logs)
    return out


def record(runs: Path, model: str, rank: int) -> dict:
    return json.loads((runs / model / f"rank{rank}.json").read_text())


def unwrapped(model: str) -> torch.nn.Module:
    if model == "igpt":
        module = PixelPretrainer(**IGPT)
        module.set_palette(Palette.uniform(4))
        return module
    return ImageClassifier(**VIT)


def group_names(module: torch.nn.Module, model: str) -> list[list[str]]:
    target = module if model == "igpt" else module.backbone  # what each task's configure_optimizers groups
    names = {id(p): name for name, p in module.named_parameters()}
    return [sorted(names[id(p)] for p in group["params"]) for group in weight_decay_groups(target)]


@pytest.mark.parametrize("model", MODELS)
def test_decay_groups_under_fsdp_equal_the_unwrapped_models(runs: Path, model: str):
    expected = group_names(unwrapped(model), model)
    assert expected[0] and expected[1]
    for rank in (0, 1):
        got = record(runs, model, rank)
        assert got["strategy"] == "BlockFSDP" and got["wrapped"] == "FullyShardedDataParallel"
        # every parameter is a 1-D shard here: a dimension test would have put all of them in no-decay
        assert all(len(shape) == 1 for shape in got["shard_shapes"].values())
        assert got["groups"] == expected
        assert got["weight_decay"] == [0.01, 0.0]  # AdamW's default on the decaying group, 0 on the other


@pytest.mark.parametrize("model", MODELS)
def test_clipped_steps_keep_the_loss_and_weights_finite(runs: Path, model: str):
    for rank in (0, 1):
        got = record(runs, model, rank)
        assert len(got["losses"]) == 2 and all(torch.isfinite(torch.tensor(got["losses"])))
        assert got["finite"]
        assert min(got["norms"]) > CLIP  # the clip scaled both steps' gradients
    assert record(runs, model, 0)["norms"] == record(runs, model, 1)["norms"]  # one global norm on every rank


def reference_norm(runs: Path, model: str) -> float:
    """The first step's gradient norm of the unwrapped model: the same initial weights, the mean of the two
    ranks' losses on their batches (FSDP averages the ranks' gradients)."""
    module = unwrapped(model)
    module.load_state_dict(torch.load(runs / model / "initial.pt"))
    losses = []
    for rank in (0, 1):
        images, labels = torch.load(runs / model / f"batch{rank}.pt")
        if model == "igpt":
            losses.append(module.losses(module.tokenize(images))[0])
        else:
            losses.append(F.cross_entropy(module.backbone(images), labels))
    torch.stack(losses).mean().backward()
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads])))


@pytest.mark.parametrize("model", MODELS)
def test_clip_norm_over_shards_equals_the_unsharded_models(runs: Path, model: str):
    sharded = record(runs, model, 0)["norms"][0]
    assert sharded == pytest.approx(reference_norm(runs, model), abs=1e-5)


def test_per_block_compile_composes_with_fsdp_and_checkpointing(runs: Path):
    assert record(runs, "igpt", 0)["compiled_frames"] > 0 and record(runs, "igpt", 1)["compiled_frames"] > 0


def test_meta_built_igpt_is_materialised_with_its_own_init(runs: Path):
    assert record(runs, "igpt", 0)["meta_before_wrapping"]
    initial = torch.load(runs / "igpt" / "initial.pt")
    depth = IGPT["n_layer"]
    for i in range(depth):
        block = f"model.blocks.{i}."
        assert initial[block + "attn.qkv.weight"].std() == pytest.approx(0.02, rel=0.1)  # PyTorch's: ~0.1
        assert initial[block + "mlp.0.weight"].std() == pytest.approx(0.02, rel=0.1)
        for projection in ("attn.proj.weight", "mlp.2.weight"):  # residual outputs shrink with depth
            assert initial[block + projection].std() == pytest.approx(0.02 / (2 * depth) ** 0.5, rel=0.1)
        assert torch.equal(initial[block + "ln_1.weight"], torch.ones(IGPT["n_embd"]))
        assert not initial[block + "attn.qkv.bias"].any()
    assert initial["model.tok_emb.weight"].std() == pytest.approx(0.02, rel=0.1)  # PyTorch's embedding: N(0, 1)
    assert initial["model.pos_emb"].std() == pytest.approx(0.01, rel=0.1)
    assert initial["model.head.weight"].std() == pytest.approx(0.02, rel=0.1)


def test_meta_built_vit_is_materialised_with_timms_init(runs: Path):
    assert record(runs, "vit", 0)["meta_before_wrapping"]
    initial = torch.load(runs / "vit" / "initial.pt")
    for i in range(VIT["model_kwargs"]["depth"]):
        block = f"backbone.blocks.{i}."
        for weight in ("attn.qkv.weight", "attn.proj.weight", "mlp.fc1.weight", "mlp.fc2.weight"):
            assert initial[block + weight].std() == pytest.approx(0.02, rel=0.1)  # trunc_normal(0.02)
        assert torch.equal(initial[block + "norm1.weight"], torch.ones(VIT["model_kwargs"]["embed_dim"]))
        assert not initial[block + "mlp.fc1.bias"].any()
    assert initial["backbone.pos_embed"].std() == pytest.approx(0.02, rel=0.15)
    assert initial["backbone.cls_token"].abs().max() < 1e-4  # N(0, 1e-6)
