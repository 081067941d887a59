"""A run's record changes only once a run got past its start checks: failed resumes leave a finished run
byte for byte as it was; `--ckpt_path last` finds the newest run with a checkpoint; the command line wins
over a checkpoint's settings; one process at a time in a run folder; stale temporaries removed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_vitlight, smoke_fit_on_folder

ROOT = Path(__file__).resolve().parents[1]


def fit_args(images: Path, runs: Path, *extra: str) -> list[str]:
    return [*smoke_fit_on_folder(images), "--trainer.enable_progress_bar", "false", "--runs_dir", str(runs), *extra]


def snapshot(folder: Path) -> dict[str, bytes | str]:
    """Every file's bytes and every link's target under `folder`."""
    return {
        str(p.relative_to(folder)): os.readlink(p) if p.is_symlink() else p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_symlink() or p.is_file()
    }


@pytest.fixture()
def finished(finished_smoke_run: tuple[Path, Path]) -> tuple[Path, Path]:
    return finished_smoke_run


def copy_runs(finished: tuple[Path, Path], tmp_path: Path) -> tuple[Path, Path, Path]:
    images, runs = finished
    copy = tmp_path / "runs"
    shutil.copytree(runs, copy, symlinks=True)
    (run,) = (copy / "quickstart").iterdir()
    return images, copy, run


def in_process(capsys: pytest.CaptureFixture, *args: str) -> subprocess.CompletedProcess:
    """`vitlight ARGS` in this process (no interpreter start-up): exit code and stderr as a subprocess's."""
    from vitlight.cli import main

    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exit_:
        code = exit_.code
    captured = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), code, captured.out, captured.err)


def one_error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("vitlight: error:")]
    return line


FAILED_RESUMES = {
    "weights that do not fit": (("--model.init_args.model_kwargs.depth", "2"), "model.init_args.model_kwargs.depth"),
    "a data folder typo": (("--data.data_dir", "/nowhere"), "/nowhere"),
    "data that fails in set-up": (("--data.train_size", "1000"), "train_size"),
}


@pytest.mark.parametrize("case", list(FAILED_RESUMES), ids=lambda c: c.replace(" ", "_"))
def test_a_failed_resume_leaves_the_finished_run_byte_for_byte(finished, tmp_path: Path, case: str, capsys):
    images, runs, run = copy_runs(finished, tmp_path)
    before = snapshot(run)
    assert "summary.json" in before and "config.yaml" in before and "checkpoints/last.ckpt" in before
    extra, named = FAILED_RESUMES[case]
    result = in_process(capsys, *fit_args(images, runs, "--ckpt_path", "last", *extra))
    assert named in one_error_line(result)
    assert snapshot(run) == before


def test_an_unreadable_checkpoint_is_one_line_and_no_run_folder(finished, tmp_path: Path, capsys):
    images, runs, run = copy_runs(finished, tmp_path)
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes((run / "checkpoints" / "last.ckpt").read_bytes()[:5000])
    text = tmp_path / "notes.ckpt"
    text.write_text("not a checkpoint")
    for subcommand, path, said in (("fit", truncated, "truncated or damaged"), ("test", text, "not a PyTorch")):
        args = fit_args(images, runs, "--ckpt_path", str(path))
        line = one_error_line(in_process(capsys, subcommand, *args[1:]))
        assert str(path) in line and said in line and "weights_only" not in line
    assert [p.name for p in (runs / "quickstart").iterdir()] == [run.name]  # no folder of a failed start


def test_a_checkpoint_of_another_task_is_refused_in_one_line(finished, tmp_path: Path, capsys):
    images, runs, run = copy_runs(finished, tmp_path)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["vitlight_config"]["model"]["class_path"] = "vitlight.tasks.PixelPretrainer"
    checkpoint["hyper_parameters"]["_class_path"] = "vitlight.tasks.PixelPretrainer"
    torch.save(checkpoint, tmp_path / "igpt.ckpt")
    line = one_error_line(in_process(capsys, *fit_args(images, runs, "--ckpt_path", str(tmp_path / "igpt.ckpt"))))
    assert "PixelPretrainer" in line and "ImageClassifier" in line and "same model class" in line


def test_ckpt_path_last_resumes_the_newest_run_that_has_a_checkpoint(finished, tmp_path: Path, capsys):
    images, runs, run = copy_runs(finished, tmp_path)
    typo = in_process(capsys, *fit_args(images, runs, "--data.data_dir", str(tmp_path / "typo")))
    one_error_line(typo)
    assert [p.name for p in (runs / "quickstart").iterdir()] == [run.name]  # the failed start left nothing
    newer = runs / "quickstart" / "99991231-235959-newest"  # e.g. a run killed before its first checkpoint
    (newer / "checkpoints").mkdir(parents=True)
    from vitlight.runs import latest_run

    assert latest_run(runs, "quickstart") == run


def test_the_command_line_wins_over_the_checkpoint_and_stale_temporaries_go(finished, tmp_path: Path):
    images, runs, run = copy_runs(finished, tmp_path)
    leftovers = [run / "checkpoints" / ".last.ckpt.k1ll3d.tmp", run / ".summary.json.k1ll3d.tmp"]
    for path in leftovers:
        path.write_bytes(b"x" * 1000)  # as a SIGKILL during an atomic write leaves them
    result = run_vitlight(
        *fit_args(images, runs, "--ckpt_path", "last", "--trainer.max_epochs", "2"),
        "--model.init_args.label_smoothing",
        "0.0",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "command line wins" in result.stderr
        and "model.init_args.label_smoothing 0.0 (checkpoint: 0.1)" in result.stderr
    )
    assert "removed 2 temporary file(s)" in result.stderr
    assert not any(path.exists() for path in leftovers)
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["hyper_parameters"]["label_smoothing"] == 0.0 and checkpoint["global_step"] == 4
    assert "label_smoothing: 0.0" in (run / "config.yaml").read_text()
    assert not (run / "run.lock").exists()


def test_a_second_process_in_a_run_folder_refuses_in_one_line(finished, tmp_path: Path):
    images, runs, run = copy_runs(finished, tmp_path)
    marker = tmp_path / "training"
    first = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "vitlight",
            *fit_args(images, runs, "--ckpt_path", "last", "--trainer.max_epochs", "2"),
            "--trainer.callbacks+=tests.helpers.callbacks.PauseAtStep",
            "--trainer.callbacks.step=3",
            f"--trainer.callbacks.marker={marker}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.time() + 300
        while not marker.exists() and first.poll() is None and time.time() < deadline:
            time.sleep(0.2)
        assert marker.exists(), first.stderr.read() if first.poll() is not None else "no step in time"
        before = snapshot(run)
        second = run_vitlight(*fit_args(images, runs, "--ckpt_path", "last"), cwd=tmp_path)
        line = one_error_line(second)
        assert f"is in use by process {first.pid}" in line and str(run) in line
        # the refused process wrote nothing (the paused one may still flush its own W&B console log)
        after = snapshot(run)
        assert {k: v for k, v in after.items() if "/files/" not in k} == {
            k: v for k, v in before.items() if "/files/" not in k
        }
        assert after.keys() == before.keys()
    finally:
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
        first.stderr.close()
    # the killed process's lock is stale (its pid is gone): the next resume takes it over and finishes
    assert (run / "run.lock").exists()
    resumed = run_vitlight(*fit_args(images, runs, "--ckpt_path", "last", "--trainer.max_epochs", "2"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not (run / "run.lock").exists()


@pytest.mark.slow  # two real runs (~35 s on 2 shared cores); the leftover-file case above runs by default
def test_a_sigkill_during_a_checkpoint_write_leaves_a_temporary_that_the_next_start_removes(finished, tmp_path: Path):
    images, runs, run = copy_runs(finished, tmp_path)
    killed = run_vitlight(
        *fit_args(images, runs, "--ckpt_path", "last", "--trainer.max_epochs", "2", "--checkpoint_every_n_steps", "1"),
        "--trainer.callbacks+=tests.helpers.callbacks.KillDuringSave",
        "--trainer.callbacks.step=3",
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT)},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    (orphan,) = (run / "checkpoints").glob(".last.ckpt.*.tmp")
    assert orphan.stat().st_size == 100_000
    # the atomic write kept the previous checkpoint, whole (step 3; the kill came during step 4's)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3
    resumed = run_vitlight(*fit_args(images, runs, "--ckpt_path", "last", "--trainer.max_epochs", "2"), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "removed 1 temporary file(s) left by a killed process" in resumed.stderr
    assert not list(run.rglob("*.tmp"))


class Opaque:
    """A class torch's weights_only loader does not allow: unpickling it would import and run code."""


def test_each_unreadable_checkpoint_is_named_for_what_it_is(tmp_path: Path):
    from vitlight.checkpoints import read_checkpoint
    from vitlight.errors import CheckpointError

    torch.save({"state_dict": {"w": torch.ones(64, 64)}}, tmp_path / "good.ckpt")
    torch.save({"w": torch.ones(2)}, tmp_path / "legacy.ckpt", _use_new_zipfile_serialization=False)
    (tmp_path / "truncated.ckpt").write_bytes((tmp_path / "good.ckpt").read_bytes()[:3000])
    (tmp_path / "text.ckpt").write_text("hello")
    torch.save({"code": Opaque()}, tmp_path / "code.ckpt")
    for mmap in (False, True):
        assert torch.equal(read_checkpoint(tmp_path / "legacy.ckpt", mmap=mmap)["w"], torch.ones(2))
        for name, said in (
            ("truncated", "truncated or damaged"),
            ("text", "not a PyTorch checkpoint (it starts with b'hell')"),
            ("code", "does not unpickle (that could run code)"),
        ):
            with pytest.raises(CheckpointError) as error:
                read_checkpoint(tmp_path / f"{name}.ckpt", mmap=mmap)
            assert said in str(error.value) and "weights_only" not in str(error.value), str(error.value)
