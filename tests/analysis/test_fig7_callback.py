"""Fig7Logger: the Fig. 7 analyses logged to W&B during training."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tests.analysis.test_attention_callback import RecordingWandbLogger, Task, fake_trainer
from tests.conftest import EXPERIMENTS, SMOKE
from tests.data.conftest import cifar_batches
from tests.helpers.wandb_records import read_records
from vitlight.analysis.fig7_callback import KEYS, Fig7Logger
from vitlight.cli import main
from vitlight.errors import ConfigError

FIG7_YAML = EXPERIMENTS / "vit_ti4_cifar10_fig7.yaml"


def test_logs_the_three_panels_and_the_distance_table_every_nth_epoch():
    logger = RecordingWandbLogger()
    callback = Fig7Logger(every_n_epochs=2, num_images=3, components=5)
    task = Task(depth=2, num_heads=2)
    for epoch in range(4):
        callback.on_validation_epoch_end(fake_trainer([logger], epoch=epoch), task)
    callback.on_validation_epoch_end(fake_trainer([logger], epoch=1, sanity=True), task)
    assert [step for _, step in logger.logged] == [20, 40]
    metrics = logger.logged[0][0]
    assert list(metrics) == list(KEYS)
    assert all(metrics[key].image.size[0] > 100 for key in KEYS[:3])
    table = metrics[KEYS[3]]
    assert table.columns == ["layer", "head", "mean_attention_distance_px"]
    assert [row[:2] for row in table.data] == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert all(0 < row[2] < 16 for row in table.data)
    assert callback._images.shape == (3, 3, 16, 16)


def test_uint8_validation_images_are_normalised_before_the_model_sees_them():
    """Loaders that hand over uint8 pixels: the same distances as for the images normalised by hand."""
    pixels = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8)
    normalised = (pixels.float() / 255 - 0.5) / 0.5  # the fake data module's mean and std
    results = []
    for images in (pixels, normalised):
        logger, trainer = RecordingWandbLogger(), fake_trainer([])
        trainer.loggers = [logger]
        trainer.val_dataloaders = DataLoader(TensorDataset(images, torch.zeros(4, dtype=torch.long)), batch_size=2)
        Fig7Logger(num_images=4).on_validation_epoch_end(trainer, Task())
        results.append([row[2] for row in logger.logged[0][0][KEYS[3]].data])
    assert results[0] == pytest.approx(results[1], rel=1e-4)


def test_a_model_without_position_embeddings_warns_once_and_turns_off():
    logger = RecordingWandbLogger()
    callback = Fig7Logger()
    with pytest.warns(UserWarning, match="Fig7Logger is off: .*position embedding"):
        callback.on_validation_epoch_end(fake_trainer([logger]), Task(pos_embed="none"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        callback.on_validation_epoch_end(fake_trainer([logger], epoch=1), Task(pos_embed="none"))
    assert callback.disabled and logger.logged == []


def test_no_wandb_logger_is_a_no_op_and_bad_arguments_are_one_line():
    callback = Fig7Logger()
    callback.on_validation_epoch_end(fake_trainer([]), Task())
    assert callback._images is None and not callback.disabled
    for kwargs in ({"every_n_epochs": 0}, {"num_images": 0}, {"components": 0}):
        with pytest.raises(ConfigError, match="at least 1"):
            Fig7Logger(**kwargs)


def test_the_demonstrating_experiment_logs_fig7_to_its_offline_run(tmp_path: Path):
    data = cifar_batches(tmp_path / "data", "cifar10", per_batch=20)
    runs = tmp_path / "runs"
    assert (
        main(
            [
                "fit",
                "--config",
                str(FIG7_YAML),
                "--config",
                str(SMOKE),
                "--runs_dir",
                str(runs),
                "--trainer.enable_progress_bar",
                "false",
                "--data.data_dir",
                str(data),
            ]
        )
        == 0
    )
    (run,) = runs.glob(f"{FIG7_YAML.stem}/*/wandb/offline-run-*")
    assert len(list((run / "files" / "media" / "images").rglob("*.png"))) == 3
    logged = set()
    for record in read_records(next(run.glob("run-*.wandb"))):
        if record.WhichOneof("record_type") == "history":
            logged |= {item.key or item.nested_key[0] for item in record.history.item}
    assert set(KEYS) <= logged


def test_the_callback_is_on_in_exactly_one_shipped_experiment():
    using = sorted(p.name for p in EXPERIMENTS.glob("*.yaml") if "Fig7Logger" in p.read_text())
    assert using == [FIG7_YAML.name]
