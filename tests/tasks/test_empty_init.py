"""`PixelPretrainer(empty_init=True)`: the paper-size ImageGPT is built on the meta device, so building it
costs no memory; it gets real weights, with ImageGPT's own initialisation, only where it will train
(block by block under vitlight.fsdp.BlockFSDP: tests/test_fsdp_gloo.py; whole under other strategies)."""

from __future__ import annotations

import resource
from pathlib import Path

import lightning as L
import pytest
import torch

from tests.conftest import write_image_folder
from vitlight.data import ImageFolder
from vitlight.errors import ConfigError
from vitlight.tasks import ImageClassifier
from vitlight.tasks.pixel_pretrain import PixelPretrainer

GB = 2**30


def kib(field: str) -> int:
    """A memory figure of this process from /proc/self/status (VmRSS, VmData), in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the process's memory from /proc")
def test_igpt_xl_is_built_without_its_27_gb_of_weights():
    # a ceiling on this process's data segment: a regression fails with an allocation error, not a swapped host
    soft, hard = resource.getrlimit(resource.RLIMIT_DATA)
    ceiling = kib("VmData") + 2 * GB
    resource.setrlimit(resource.RLIMIT_DATA, (ceiling if hard == resource.RLIM_INFINITY else min(ceiling, hard), hard))
    try:
        rss = kib("VmRSS")
        module = PixelPretrainer(preset="igpt-xl", palette_size=512, image_size=32, empty_init=True)
        grown = kib("VmRSS") - rss
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, (soft, hard))
    parameters = sum(p.numel() for p in module.parameters())
    assert parameters > 6.5e9  # iGPT-XL: 60 blocks of width 3072
    allocated = sum(t.numel() * t.element_size() for t in [*module.parameters(), *module.buffers()] if not t.is_meta)
    assert allocated < GB // 1000  # nothing but what the module holds besides the ImageGPT (no classifier here)
    assert grown < GB  # the process grew by well under 1 GB (27 GB in fp32 if the weights were real)


def test_empty_init_is_materialised_with_igpts_init_under_a_plain_strategy(tmp_path: Path):
    images = write_image_folder(tmp_path / "images", size=8)
    data = ImageFolder(data_dir=str(images), image_size=8, batch_size=4, num_workers=0, val_fraction=0.0)
    model = PixelPretrainer(
        preset="igpt-tiny", n_layer=2, n_embd=64, n_head=2, palette="uniform", palette_size=8, image_size=8,
        empty_init=True, lr_scheduler=None,
    )  # fmt: skip
    assert all(p.is_meta for p in model.model.parameters())
    initial = {}

    class Initial(L.Callback):
        def on_train_start(self, trainer, module) -> None:
            initial.update({k: v.clone() for k, v in module.state_dict().items()})

    trainer = L.Trainer(
        max_steps=1, limit_val_batches=0, logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, callbacks=[Initial()],
    )  # fmt: skip
    trainer.fit(model, datamodule=data)
    assert not any(p.is_meta for p in model.parameters())
    assert initial["model.blocks.0.attn.qkv.weight"].std() == pytest.approx(0.02, rel=0.1)  # PyTorch's: ~0.07
    assert initial["model.blocks.1.mlp.2.weight"].std() == pytest.approx(0.01, rel=0.1)  # 0.02 / sqrt(2 x 2 blocks)
    assert initial["model.tok_emb.weight"].std() == pytest.approx(0.02, rel=0.1)  # PyTorch's: 1
    assert torch.equal(initial["model.ln_f.weight"], torch.ones(64))
    assert "empty_init" not in model.hparams  # a module rebuilt from its checkpoint gets real weights to load into


def test_empty_init_cannot_start_from_a_checkpoint():
    with pytest.raises(ConfigError, match="empty_init .*checkpoint_path"):
        PixelPretrainer(preset="igpt-tiny", empty_init=True, checkpoint_path="some.ckpt")


VIT = dict(
    model_name="vit_tiny_patch16_224",
    model_kwargs={"patch_size": 4, "embed_dim": 64, "depth": 2, "num_heads": 2},
    num_classes=10,
    image_size=16,
)


def test_empty_init_vit_is_materialised_with_timms_init():
    torch.manual_seed(0)
    built = ImageClassifier(**VIT)  # timm's own init, as a reference
    empty = ImageClassifier(**VIT, empty_init=True)
    assert all(p.is_meta for p in empty.parameters())
    empty._materialise(torch.device("cpu"))
    for (name, theirs), ours in zip(built.state_dict().items(), empty.state_dict().values()):
        assert ours.shape == theirs.shape and not ours.is_meta
        spread = 4 * float(theirs.std()) / ours.numel() ** 0.5  # four standard errors of a mean
        assert float(ours.mean()) == pytest.approx(float(theirs.mean()), abs=spread + 1e-6), name
        rel = max(0.1, 4 / (2 * ours.numel()) ** 0.5)  # four standard errors of a standard deviation
        assert float(ours.std()) == pytest.approx(float(theirs.std()), rel=rel, abs=1e-5), name
    assert "empty_init" not in empty.hparams


def test_empty_init_is_refused_where_it_cannot_work():
    with pytest.raises(ConfigError, match="not one"):
        ImageClassifier(model_name="resnet18", num_classes=10, image_size=32, empty_init=True)
    with pytest.raises(ConfigError, match="EMA"):
        ImageClassifier(**VIT, empty_init=True, ema_decay=0.99)
