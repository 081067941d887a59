"""OpenAI's ImageGPT (a transformers folder) where users need it: `vitlight sample`, `vitlight probe`, fine-tuning."""

from __future__ import annotations

import json

import lightning as L
import pytest
import torch

from tests.conftest import write_image_folder
from tests.models.test_igpt_transformers import COLOURS, save_random_imagegpt
from vitlight.cli import main
from vitlight.data import ImageFolder
from vitlight.errors import CheckpointError, ConfigError
from vitlight.tasks.pixel_pretrain import PixelPretrainer

pytest.importorskip("transformers")
SIDE = 8


@pytest.fixture
def openai_folder(tmp_path):
    theirs, _ = save_random_imagegpt(tmp_path / "imagegpt", seed=2, side=SIDE)
    return tmp_path / "imagegpt", theirs


@pytest.fixture
def images(tmp_path):
    return write_image_folder(tmp_path / "images", per_class=6, size=SIDE)


def test_sample_completes_images_with_the_openai_model(openai_folder, images, tmp_path):
    folder, _ = openai_folder
    out = tmp_path / "samples"
    code = main(
        [
            "sample",
            "--ckpt",
            str(folder),
            "--n",
            "2",
            "--temperature",
            "0",
            "--out",
            str(out),
            "--data",
            "ImageFolder",
            "--data.data_dir",
            str(images),
            "--data.image_size",
            str(SIDE),
        ]
    )
    assert code == 0 and (out / "completions.png").stat().st_size > 0


def test_a_folder_without_data_config_asks_for_data(openai_folder, capsys):
    folder, _ = openai_folder
    assert main(["sample", "--ckpt", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--data CIFAR10" in err[0]


def test_probe_reads_every_chosen_layer(openai_folder, images, tmp_path):
    folder, _ = openai_folder
    code = main(
        [
            "probe",
            "--ckpt",
            str(folder),
            "--layers",
            "0,1",
            "--baseline",
            "none",
            "--max_iter",
            "10",
            "--l2",
            "1e-3",
            "--runs_dir",
            str(tmp_path / "runs"),
            "--data",
            "ImageFolder",
            "--data.data_dir",
            str(images),
            "--data.image_size",
            str(SIDE),
            "--data.val_fraction",
            "0.25",
        ]
    )
    assert code == 0
    summary = json.loads(next((tmp_path / "runs").rglob("summary.json")).read_text())
    assert [row["layer"] for row in summary["layers"]] == [0, 1]
    assert summary["checkpoint"] == str(folder.resolve())


def test_fine_tuning_starts_from_the_openai_weights(openai_folder, images):
    folder, theirs = openai_folder
    module = PixelPretrainer.from_transformers(
        str(folder),
        classifier_weight=1.0,
        num_classes=3,
        lr_scheduler=None,
        optimizer=lambda params: torch.optim.AdamW(params, lr=1e-3),
    )
    assert module.hparams.architecture == "openai" and module.palette.kind == "openai"
    tokens = torch.randint(0, COLOURS, (2, SIDE * SIDE))
    with torch.no_grad():  # the starting point is OpenAI's model itself
        sos = torch.full((2, 1), COLOURS)
        expected = theirs(input_ids=torch.cat([sos, tokens[:, :-1]], dim=1)).logits
        assert (module.model(tokens) - expected).abs().max() < 1e-4
    before = module.model.blocks[0].attn.qkv.weight.detach().clone()
    datamodule = ImageFolder(data_dir=str(images), image_size=SIDE, batch_size=6, num_workers=0, val_fraction=0.25)
    trainer = L.Trainer(
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=datamodule)  # the OpenAI palette is kept: no data can check it
    assert module.palette.kind == "openai"
    assert not torch.equal(before, module.model.blocks[0].attn.qkv.weight)
    assert torch.isfinite(trainer.callback_metrics["train/loss"])


def test_mismatched_shape_and_objective_are_one_line_errors(openai_folder):
    folder, _ = openai_folder
    with pytest.raises(CheckpointError, match="does not fit this model: n_layer=2"):
        PixelPretrainer(
            preset="igpt-tiny",
            architecture="openai",
            palette_size=COLOURS,
            image_size=SIDE,
            checkpoint_path=str(folder),
        )
    with pytest.raises(ConfigError, match="objective: autoregressive"):
        PixelPretrainer(architecture="openai", objective="bert")
