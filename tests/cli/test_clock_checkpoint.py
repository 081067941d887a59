"""Step checkpoints by the clock under two CPU processes (DDP on gloo): rank 0's clock decides, broadcast
once every log_every_n_steps optimizer steps, so both ranks save at the same steps and none waits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.test_ddp import ENV, ddp_args
from tests.conftest import run_vitlight, write_image_folder


@pytest.mark.slow  # two `vitlight fit` processes: about 40 s; `make test-slow` runs it
def test_two_processes_save_by_the_clock_at_the_same_steps(tmp_path: Path):
    images = write_image_folder(tmp_path / "images", per_class=40, size=16)
    saves = tmp_path / "saves"
    result = run_vitlight(
        *ddp_args(
            images,
            tmp_path / "runs",
            "--data.train_size",
            "96",
            "--trainer.limit_train_batches",
            "6",
            "--trainer.log_every_n_steps",
            "2",
            "--checkpoint_every_n_steps",
            "0",
            "--checkpoint_every_minutes",
            "1e-9",  # due at every step: only the broadcast steps (every 2nd) may save
            "--trainer.callbacks+=tests.helpers.saves.RecordSaveSteps",
            f"--trainer.callbacks.folder={saves}",
        ),
        env=ENV,
        cwd=tmp_path,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (json.loads((saves / f"rank{r}.json").read_text()) for r in (0, 1))
    assert rank0 == rank1  # every save is a collective: both ranks took part in each
    assert [2, 4] == [step for step in rank0 if step < 6]  # mid-epoch: by the clock, on broadcast steps only
