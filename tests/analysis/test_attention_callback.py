"""AttentionRolloutLogger: when it logs, what, and that a model without a class token only warns."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import timm
import torch
from lightning.pytorch.loggers import WandbLogger
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tests.conftest import EXPERIMENTS, SMOKE, write_image_folder
from tests.helpers.wandb_records import read_records
from vitlight.analysis.attention_callback import LOG_KEY, AttentionRolloutLogger, denormalize, enlarge
from vitlight.cli import main
from vitlight.errors import ConfigError


class RecordingWandbLogger(WandbLogger):
    """A WandbLogger that never starts a run: it keeps what it was asked to log."""

    def __init__(self) -> None:
        super().__init__(offline=True)
        self.logged: list[tuple[dict, int | None]] = []

    def log_metrics(self, metrics, step=None) -> None:  # type: ignore[override]
        self.logged.append((dict(metrics), step))


class Task(nn.Module):
    def __init__(self, **vit_kwargs) -> None:
        super().__init__()
        torch.manual_seed(0)
        args = dict(pretrained=False, img_size=16, patch_size=4, depth=1, embed_dim=32, num_heads=2, num_classes=3)
        self.backbone = timm.create_model("vit_tiny_patch16_224", **{**args, **vit_kwargs})


def fake_trainer(loggers: list, images: int = 5, epoch: int = 0, sanity: bool = False) -> SimpleNamespace:
    generator = torch.Generator().manual_seed(0)
    dataset = TensorDataset(torch.randn(images, 3, 16, 16, generator=generator), torch.arange(images) % 3)
    datamodule = SimpleNamespace(
        classes=["cat", "dog", "frog"], transform_settings=SimpleNamespace(mean=(0.5,) * 3, std=(0.5,) * 3)
    )
    return SimpleNamespace(
        sanity_checking=sanity,
        is_global_zero=True,
        current_epoch=epoch,
        global_step=10 * (epoch + 1),
        loggers=loggers,
        val_dataloaders=DataLoader(dataset, batch_size=2),
        datamodule=datamodule,
    )


def test_logs_every_nth_epoch_the_same_images_with_captions():
    logger = RecordingWandbLogger()
    callback = AttentionRolloutLogger(every_n_epochs=2, num_images=3)
    task = Task()
    task.train()
    for epoch in range(4):
        callback.on_validation_epoch_end(fake_trainer([logger], epoch=epoch), task)
    callback.on_validation_epoch_end(fake_trainer([logger], epoch=1, sanity=True), task)
    assert [step for _, step in logger.logged] == [20, 40]  # after epochs 2 and 4 (indices 1 and 3)
    first, second = (metrics[LOG_KEY] for metrics, _ in logger.logged)
    assert len(first) == len(second) == 3
    assert [image._caption for image in first] == [image._caption for image in second]
    assert first[0]._caption.startswith("#0 true cat / pred ")
    assert np.array_equal(np.asarray(first[1].image), np.asarray(second[1].image))  # same weights, same image
    assert first[0].image.size == (128, 128)  # 16x16 enlarged 8x
    assert task.training and all(m.training for m in task.modules())  # modes restored


def test_no_wandb_logger_is_a_no_op():
    callback = AttentionRolloutLogger()
    callback.on_validation_epoch_end(fake_trainer([]), Task())
    assert callback._images is None and not callback.disabled


def test_a_model_without_class_token_warns_once_and_turns_off():
    logger = RecordingWandbLogger()
    callback = AttentionRolloutLogger()
    task = Task(class_token=False, global_pool="avg")
    with pytest.warns(UserWarning, match="AttentionRolloutLogger is off: .*class token"):
        callback.on_validation_epoch_end(fake_trainer([logger]), task)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        callback.on_validation_epoch_end(fake_trainer([logger], epoch=1), task)
    assert callback.disabled and logger.logged == []


def test_fewer_validation_images_than_asked():
    logger = RecordingWandbLogger()
    AttentionRolloutLogger(num_images=8).on_validation_epoch_end(fake_trainer([logger], images=2), Task())
    assert len(logger.logged[0][0][LOG_KEY]) == 2


@pytest.mark.parametrize("kwargs", [{"every_n_epochs": 0}, {"num_images": 0}, {"head_fusion": "sum"}])
def test_bad_arguments(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs))):
        AttentionRolloutLogger(**kwargs)


def test_display_helpers():
    images = torch.stack([torch.full((3, 2, 2), -1.0), torch.full((3, 2, 2), 1.0)])
    pixels = denormalize(images, (0.5,) * 3, (0.5,) * 3)
    assert pixels.shape == (2, 2, 2, 3) and pixels.dtype == np.uint8
    assert pixels[0].max() == 0 and pixels[1].min() == 255
    grey = denormalize(torch.arange(4.0).view(1, 1, 2, 2))  # no statistics: stretched to [0, 255]
    assert grey.shape == (1, 2, 2, 3) and grey.min() == 0 and grey.max() == 255
    assert enlarge(np.zeros((20, 30, 3), np.uint8)).shape == (140, 210, 3)
    assert enlarge(np.zeros((200, 300, 3), np.uint8)).shape == (200, 300, 3)


def test_listed_in_the_trainer_callbacks_it_logs_overlays_to_the_offline_run(tmp_path: Path):
    data = write_image_folder(tmp_path / "images", per_class=16, size=16)
    code = main(
        [
            "fit",
            "--config",
            str(EXPERIMENTS / "quickstart.yaml"),
            "--config",
            str(SMOKE),
            "--data",
            "ImageFolder",
            "--data.data_dir",
            str(data),
            "--data.num_workers",
            "0",
            "--data.image_size",
            "16",
            "--data.val_fraction",
            "0.1",
            "--model.model_kwargs",
            json.dumps({"patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}),
            "--runs_dir",
            str(tmp_path / "runs"),
            "--trainer.max_epochs",
            "2",
            "--trainer.callbacks+=vitlight.analysis.attention_callback.AttentionRolloutLogger",
            "--trainer.callbacks.every_n_epochs",
            "2",
            "--trainer.callbacks.num_images",
            "3",
        ]
    )
    assert code == 0
    (run,) = (tmp_path / "runs").glob("quickstart/*/wandb/offline-run-*")
    media = sorted((run / "files" / "media" / "images").rglob("*.png"))
    assert len(media) == 3, media  # only after the second epoch
    logged = []  # one {field: value} per history row that has the overlays (W&B flattens them to nested keys)
    for record in read_records(next(run.glob("run-*.wandb"))):
        if record.WhichOneof("record_type") == "history":
            fields = {
                item.nested_key[1]: json.loads(item.value_json)
                for item in record.history.item
                if len(item.nested_key) == 2 and item.nested_key[0] == LOG_KEY
            }
            logged += [fields] if fields else []
    assert len(logged) == 1 and logged[0]["count"] == 3
    assert all(caption.split()[2] in ("cat", "dog", "frog") for caption in logged[0]["captions"])
