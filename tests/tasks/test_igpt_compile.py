"""`compile: true` compiles the code an ImageGPT training step runs (each block), counted in dynamo's frames.

PixelPretrainer's loss calls the model's `features`, `ln_f` and `head` rather than the model itself, so
compiling the ImageGPT's `__call__` (what `nn.Module.compile` wraps) compiled nothing: 0 frames. The
blocks are compiled instead. The backend here is aot_eager: what is counted is dynamo capturing the
step's code, which is the same for every backend, and inductor's C++ build takes about a minute on these
CPUs for even this model (tests/test_compiled_checkpoints.py trains with inductor itself).
"""

from __future__ import annotations

import functools
from pathlib import Path

import lightning as L
import pytest
import torch
from torch._dynamo.utils import counters

from tests.conftest import write_image_folder
from vitlight.data import ImageFolder
from vitlight.tasks.pixel_pretrain import PixelPretrainer


@pytest.fixture
def aot_eager(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def fit_two_steps(tmp_path: Path, compile: bool) -> PixelPretrainer:
    images = write_image_folder(tmp_path / "images", size=8)
    data = ImageFolder(data_dir=str(images), image_size=8, batch_size=4, num_workers=0, val_fraction=0.0)
    model = PixelPretrainer(
        preset="igpt-tiny",
        n_layer=2,
        n_embd=32,
        n_head=2,
        palette="uniform",
        palette_size=8,
        image_size=8,
        num_classes=3,
        lr_scheduler=None,
        compile=compile,
    )
    trainer = L.Trainer(
        max_steps=2,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=data)
    return model


def test_compile_true_compiles_the_blocks_a_training_step_runs(tmp_path: Path, aot_eager: None):
    model = fit_two_steps(tmp_path, compile=True)
    assert counters["frames"]["ok"] > 0  # 0 when only the ImageGPT's __call__ was compiled
    assert counters["stats"]["unique_graphs"] == 1  # both blocks (and both steps) run one compiled graph
    assert all(block._compiled_call_impl is not None for block in model.model.blocks)
    assert not any(name.startswith("_orig_mod") or "._orig_mod." in name for name in model.state_dict())


def test_compile_false_compiles_nothing(tmp_path: Path, aot_eager: None):
    fit_two_steps(tmp_path, compile=False)
    assert counters["frames"]["ok"] == 0
