"""No host-device sync in vitlight's own code during a training step (except when logging or saving).

Each shipped module trains a few steps through `vitlight fit` with the whole stack (W&B logger,
progress bar, checkpoint and reliability callbacks); tests.helpers.callbacks.CountHostSyncs counts
the calls from vitlight's files that would make the host wait for a GPU in every step between logs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import EXPERIMENTS, SMOKE, write_image_folder
from vitlight.cli import main

STEPS = 6
# logs and step checkpoints are due never within the counted steps; validation is off
QUIET_STEPS = [
    "--trainer.max_steps",
    str(STEPS),
    "--trainer.limit_train_batches",
    "50",
    "--trainer.limit_val_batches",
    "0",
    "--trainer.log_every_n_steps",
    "1000",
    "--checkpoint_every_n_steps",
    "0",
    "--trainer.max_epochs",
    "1",
    "--trainer.num_sanity_val_steps",
    "0",
]
FOLDER_DATA = [
    "--data",
    "ImageFolder",
    "--data.image_size",
    "14",
    "--data.num_workers",
    "0",
    "--data.batch_size",
    "4",
    "--data.horizontal_flip",
    "true",
    "--data.random_crop_padding",
    "2",
    "--data.random_erasing",
    "0.25",
]
CASES = {
    "vit_ema_mixup": [
        "quickstart.yaml",
        *FOLDER_DATA,
        "--model.init_args.ema_decay",
        "0.99",
        "--model.init_args.mixup_alpha",
        "0.8",
        "--model.init_args.cutmix_alpha",
        "1.0",
    ],
    "resnet_ema_mixup": [
        "quickstart.yaml",
        *FOLDER_DATA,
        "--model.init_args.model_name",
        "resnet18",
        "--model.init_args.model_kwargs",
        "{}",
        "--model.init_args.cifar_stem",
        "true",
        "--model.init_args.ema_decay",
        "0.99",
        "--model.init_args.mixup_alpha",
        "0.8",
    ],
    "igpt_autoregressive": ["igpt_tiny_quickstart.yaml", "--model.init_args.n_layer", "2"],
    "igpt_bert": ["igpt_tiny_quickstart_bert.yaml", "--model.init_args.n_layer", "2"],
    "igpt_finetune_head": [
        "igpt_tiny_quickstart.yaml",
        "--model.init_args.n_layer",
        "2",
        "--model.init_args.classifier_weight",
        "1.0",
    ],
    "linear_probe": ["igpt_tiny_quickstart_probe.yaml"],
}


def count_syncs(tmp_path: Path, experiment: str, *extra: str) -> list[list]:
    images = write_image_folder(tmp_path / "images", per_class=12, size=16)
    out = tmp_path / "syncs.json"
    args = [
        "fit",
        "--config",
        str(EXPERIMENTS / experiment),
        "--config",
        str(SMOKE),
        *QUIET_STEPS,
        "--data.train_size",
        "64",
        "--data.batch_size",
        "4",
        "--runs_dir",
        str(tmp_path / "runs"),
        "--trainer.callbacks+=tests.helpers.callbacks.CountHostSyncs",
        f"--trainer.callbacks.path={out}",
        *extra,
    ]
    args = [a.replace("IMAGES", str(images)) for a in args]
    if "ImageFolder" in extra:
        args += ["--data.data_dir", str(images), "--data.train_size", "32"]
    assert main(args) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize("case", list(CASES))
def test_no_host_sync_in_a_training_step(tmp_path: Path, case: str):
    experiment, *extra = CASES[case]
    windows = count_syncs(tmp_path, experiment, *extra)
    assert len(windows) >= STEPS - 2  # the counter saw the steps between the first and the last
    syncs = [event for window in windows for event in window]
    assert syncs == [], f"{case}: {len(syncs) / len(windows):.1f} syncs per step: {syncs[:8]}"
