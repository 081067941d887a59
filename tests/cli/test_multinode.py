"""Two nodes of one process each: two torchrun agents on 127.0.0.1 (static rendezvous, node ranks 0
and 1), gloo on CPU. One run folder and one W&B run for the job, the same summary as one process with
the same global batch, a resume after SIGKILL, and the checkpoint resumed by one process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import EXPERIMENTS, SMOKE, run_vitlight
from tests.helpers.wandb_records import run_ids

pytestmark = pytest.mark.slow  # five launches of the quickstart ViT, 2-4 min on 2 shared cores

TORCHRUN = str(Path(sys.executable).with_name("torchrun"))
GLOBAL_BATCH, NODES, STEPS = 16, 2, 48
# The reference is one process with the same global batch and `--trainer.strategy ddp`: its loader then
# shuffles as the job's does (DistributedSampler over one replica), so every step sees the same 16 digits,
# and only the order of floating-point sums differs (gradients averaged over 2 ranks). Measured: the same
# test accuracy, test loss 7e-6 apart (relative). Allowed: one of the 64 test digits, loss 1e-3 relative.
# (A plain single-process run shuffles another way: after 48 steps its test accuracy was 0.56 against 0.84.)
ACC_TOLERANCE, LOSS_TOLERANCE = 1.5 / 64, 1e-3
# A resumed job repeats no optimizer step, but its loader and random state after a mid-epoch kill are
# those of the checkpoint: allowed 5% test loss and 0.1 test accuracy from the uninterrupted job.
RESUME_ACC_TOLERANCE, RESUME_LOSS_TOLERANCE = 0.10, 0.05


def fit_args(runs: Path, per_process_batch: int, *extra: str) -> list[str]:
    return [
        "fit",
        "--config",
        str(EXPERIMENTS / "quickstart.yaml"),
        "--config",
        str(SMOKE),
        "--data.train_size",
        str(GLOBAL_BATCH * STEPS),
        "--data.batch_size",
        str(per_process_batch),
        "--trainer.limit_train_batches",
        "1.0",
        "--trainer.limit_val_batches",
        "1",
        "--trainer.limit_test_batches",
        str(64 // GLOBAL_BATCH),
        "--trainer.num_sanity_val_steps",
        "0",
        "--trainer.accelerator",
        "cpu",
        "--trainer.devices",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--checkpoint_every_n_steps",
        "4",
        "--runs_dir",
        str(runs),
        *extra,
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def descendants(root: int) -> list[int]:
    """Every live process below `root` (torchrun starts its workers in sessions of their own)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, queue = [], [root]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def kill_job(agents: list[subprocess.Popen]) -> None:
    """SIGKILL to the process group of each agent and of each worker, then wait until all are gone."""
    groups = set()
    for agent in agents:
        for pid in [agent.pid, *descendants(agent.pid)]:
            try:
                groups.add(os.getpgid(pid))
            except ProcessLookupError:
                continue
    for group in groups:
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for agent in agents:
        agent.wait(timeout=30)
    deadline = time.time() + 30
    while time.time() < deadline and any(_alive_in_group(group) for group in groups):
        time.sleep(0.1)
    assert not any(_alive_in_group(group) for group in groups), "a worker outlived its job"


def _alive_in_group(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


class TwoNodeJob:
    """Two torchrun agents, node ranks 0 and 1, meeting at 127.0.0.1:port; each in its own process group."""

    def __init__(self, args: list[str], logs: Path) -> None:
        port = free_port()
        self.logs = [logs.with_name(f"{logs.name}-node{rank}.log") for rank in range(NODES)]
        self.agents: list[subprocess.Popen] = []
        for rank, log in enumerate(self.logs):
            command = [
                TORCHRUN,
                "--nnodes",
                str(NODES),
                "--nproc-per-node",
                "1",
                "--node-rank",
                str(rank),
                "--rdzv-backend",
                "static",
                "--master-addr",
                "127.0.0.1",
                "--master-port",
                str(port),
                "--max-restarts",
                "0",
                "-m",
                "vitlight",
                *args,
            ]
            with open(log, "w") as stream:
                self.agents.append(
                    subprocess.Popen(
                        command,
                        stdout=stream,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                        env={**os.environ, "OMP_NUM_THREADS": "1"},
                    )
                )

    def wait(self, timeout: float = 400) -> list[int]:
        deadline = time.time() + timeout
        for agent in self.agents:
            agent.wait(timeout=max(1.0, deadline - time.time()))
        return [agent.returncode for agent in self.agents]

    def output(self) -> str:
        return "\n".join(f"--- node {rank}\n{log.read_text()[-3000:]}" for rank, log in enumerate(self.logs))


def only_run(runs: Path) -> Path:
    folders = list((runs / "quickstart").iterdir())
    assert len(folders) == 1, folders  # one run folder for the whole job
    return folders[0]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def test_two_nodes_match_one_process_and_resume_after_sigkill(tmp_path: Path):
    started = time.time()
    single = run_vitlight(
        *fit_args(tmp_path / "single", GLOBAL_BATCH, "--trainer.strategy", "ddp"),
        cwd=tmp_path,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert single.returncode == 0, single.stderr[-3000:]
    reference = summary(only_run(tmp_path / "single"))

    job = TwoNodeJob(fit_args(tmp_path / "two", GLOBAL_BATCH // NODES, "--trainer.strategy", "ddp"), tmp_path / "two")
    try:
        assert job.wait() == [0, 0], job.output()
    finally:
        kill_job(job.agents)
    two_node_s = time.time() - started
    run = only_run(tmp_path / "two")
    result = summary(run)
    text = "\n".join(log.read_text() for log in job.logs)
    assert "GLOBAL_RANK: 0, MEMBER: 1/2" in text and "GLOBAL_RANK: 1, MEMBER: 2/2" in text
    assert "num_nodes: 2" in (run / "config.yaml").read_text()  # filled in from torchrun's --nnodes
    wandb_files = list(run.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(wandb_files) == 1 and run_ids(wandb_files[0]) == {result["wandb_run_id"]}  # one W&B run, from rank 0
    assert result["status"] == reference["status"] == "finished"
    assert result["global_step"] == reference["global_step"] == STEPS
    for key in ("test/acc", "test/acc_top5"):
        assert abs(result["test"][key] - reference["test"][key]) <= ACC_TOLERANCE, (result["test"], reference["test"])
    assert abs(result["test"]["test/loss"] / reference["test"]["test/loss"] - 1) <= LOSS_TOLERANCE, (
        result["test"],
        reference["test"],
    )
    assert abs(result["best_validation"]["val/loss"] / reference["best_validation"]["val/loss"] - 1) <= LOSS_TOLERANCE
    print(f"\n1 process then 2 nodes: {two_node_s:.0f} s; test 1 process {reference['test']}; 2 nodes {result['test']}")

    # the same 2-node job, SIGKILLed (agents and workers) once a step checkpoint exists, then resumed
    resumed_runs = tmp_path / "resumed"
    job = TwoNodeJob(fit_args(resumed_runs, GLOBAL_BATCH // NODES, "--trainer.strategy", "ddp"), tmp_path / "killed")
    try:
        deadline = time.time() + 400
        while not list(resumed_runs.glob("quickstart/*/checkpoints/last.ckpt")):
            assert time.time() < deadline and all(a.poll() is None for a in job.agents), job.output()
            time.sleep(0.1)
    finally:
        kill_job(job.agents)
    run = only_run(resumed_runs)
    assert not (run / "summary.json").exists() or summary(run)["status"] != "finished", "the job ended before the kill"
    killed_at = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"]
    assert 0 < killed_at < STEPS

    job = TwoNodeJob(
        fit_args(resumed_runs, GLOBAL_BATCH // NODES, "--trainer.strategy", "ddp", "--ckpt_path", "last"),
        tmp_path / "resume",
    )
    try:
        assert job.wait() == [0, 0], job.output()
    finally:
        kill_job(job.agents)
    assert only_run(resumed_runs) == run  # the resumed job wrote into the same run folder
    after = summary(run)
    assert after["status"] == "finished" and after["global_step"] == STEPS
    assert f"Restoring states from the checkpoint path at {run}/checkpoints/last.ckpt" in job.logs[0].read_text()
    assert abs(after["test"]["test/acc"] - result["test"]["test/acc"]) <= RESUME_ACC_TOLERANCE, (
        after["test"],
        result["test"],
    )
    assert abs(after["test"]["test/loss"] / result["test"]["test/loss"] - 1) <= RESUME_LOSS_TOLERANCE, (
        after["test"],
        result["test"],
    )
    print(f"killed at step {killed_at}, resumed on 2 nodes: test {after['test']}")

    # the 2-node checkpoint, resumed by one process with the same global batch for one more epoch
    single_resume = run_vitlight(
        *fit_args(resumed_runs, GLOBAL_BATCH, "--ckpt_path", "last", "--trainer.max_epochs", "2"), cwd=tmp_path
    )
    assert single_resume.returncode == 0, single_resume.stderr[-3000:]
    assert only_run(resumed_runs) == run
    assert summary(run)["global_step"] == 2 * STEPS and summary(run)["status"] == "finished"
    print(f"whole test: {time.time() - started:.0f} s")
