"""The processes of one SLURM job agree on one run: two processes with srun's variables on 127.0.0.1.
Rank 0 serves the store on MASTER_PORT, the other asks it; then the process group (gloo, as Lightning
would start it) comes up on the same port, reusing rank 0's server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from vitlight.cluster import Launch, check_devices, fill_num_nodes
from vitlight.errors import ConfigError

PROCESS = """
import json, sys
import torch
import torch.distributed as dist
from vitlight.cluster import agree, external_launch
from vitlight.errors import ConfigError

launch = external_launch()
fail = sys.argv[1] == "fail"
def decide():
    if fail:
        raise ConfigError("--ckpt_path last: nothing to resume")
    return {"run_id": "20260101-000000-abcdef", "wandb_id": "1234abcd", "ckpt_path": None}
try:
    answer = agree(launch, decide)
except ConfigError as error:
    print(json.dumps({"rank": launch.rank, "error": str(error)}))
    sys.exit(2)
dist.init_process_group("gloo", rank=launch.rank, world_size=launch.world_size)  # env://, as Lightning does
value = torch.tensor([launch.rank + 1])
dist.all_reduce(value)
dist.destroy_process_group()
print(json.dumps({"rank": launch.rank, "nodes": launch.num_nodes, "launcher": launch.launcher, "sum": int(value), **answer}))
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_slurm_job(mode: str, tmp_path: Path) -> list[subprocess.CompletedProcess]:
    port = free_port()
    processes = []
    for rank in range(2):
        env = {
            **os.environ,
            "SLURM_NTASKS": "2",
            "SLURM_PROCID": str(rank),
            "SLURM_LOCALID": "0",
            "SLURM_NODEID": str(rank),
            "SLURM_NNODES": "2",
            "SLURM_NTASKS_PER_NODE": "1",
            "SLURM_JOB_ID": "4242",
            "SLURM_JOB_NAME": "vit",
            "SLURM_NODELIST": "127.0.0.1",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "TORCHELASTIC_RUN_ID", "GROUP_RANK"):
            env.pop(name, None)
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", PROCESS, mode],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=tmp_path,
                start_new_session=True,
            )
        )
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=240)
            results.append(subprocess.CompletedProcess(process.args, process.returncode, out, err))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return results


def test_srun_processes_agree_on_one_run_and_then_form_the_process_group(tmp_path: Path):
    results = run_slurm_job("ok", tmp_path)
    assert [r.returncode for r in results] == [0, 0], [r.stderr[-2000:] for r in results]
    answers = [json.loads(r.stdout.strip().splitlines()[-1]) for r in results]
    assert [a["rank"] for a in answers] == [0, 1]
    assert {(a["run_id"], a["wandb_id"], a["launcher"], a["nodes"]) for a in answers} == {
        ("20260101-000000-abcdef", "1234abcd", "SLURM", 2)
    }
    assert [a["sum"] for a in answers] == [3, 3]  # the process group works on the port rank 0's store holds


def test_a_user_error_on_rank_0_ends_every_rank_with_the_same_line(tmp_path: Path):
    results = run_slurm_job("fail", tmp_path)
    assert [r.returncode for r in results] == [2, 2], [r.stderr[-2000:] for r in results]
    errors = {json.loads(r.stdout.strip().splitlines()[-1])["error"] for r in results}
    assert errors == {"--ckpt_path last: nothing to resume"}


class _Trainer(dict):
    def __getattr__(self, name):
        return self[name]

    def __setattr__(self, name, value):
        self[name] = value


def test_num_nodes_comes_from_the_launcher_and_a_mismatch_is_one_line():
    launch = Launch("torchrun", rank=0, world_size=16, num_nodes=2, address="127.0.0.1", port=29500, attempt="0")
    trainer = _Trainer(num_nodes=1, devices=8)
    fill_num_nodes(trainer, launch)
    assert trainer.num_nodes == 2
    check_devices(8, 2, launch)
    check_devices("auto", 2, launch)  # Lightning resolves "auto" itself
    with pytest.raises(
        ConfigError,
        match=r"torchrun started 16 processes, but --trainer.devices 4 x --trainer.num_nodes 2 = 8; set devices to the processes per node \(8 for 2 nodes\)",
    ):
        check_devices(4, 2, launch)
