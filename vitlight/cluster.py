"""Processes started by a cluster launcher (torchrun, SLURM's srun): one run per job, not per process.

Lightning finds the launcher itself (its cluster environments, in its own order: torchrun first,
then SLURM) and sets up the process group. vitlight only needs every process of the job to agree
on one run folder, one W&B run and one checkpoint to resume before Lightning starts; rank 0 decides
them and hands them to the other ranks through the job's TCP store: the store that torchrun's agent
already serves at MASTER_ADDR:MASTER_PORT, or, under srun, the one rank 0 would start there for the
process group anyway (it is kept open here, and the process group reuses it).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from vitlight.errors import ConfigError, VitlightError

AGREE_TIMEOUT_S = 600.0  # rank 0 may be slow to start (a cold file system); the others wait this long
_open_stores: list[Any] = []  # the store rank 0 serves must live as long as the process


@dataclass(frozen=True)
class Launch:
    """One process of a job that a cluster launcher started (world size > 1)."""

    launcher: str  # "torchrun" or "SLURM"
    rank: int
    world_size: int
    num_nodes: int
    address: str
    port: int
    attempt: str  # torchrun's restart count, SLURM's job id and restart count: a restarted job agrees anew


def external_launch() -> Launch | None:
    """The launcher that started this process, found by Lightning's own detection; None for a
    process started by hand (Lightning then starts any further processes itself)."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    if TorchElasticEnvironment.detect():
        environment: Any = TorchElasticEnvironment()
        launcher = "torchrun"
        local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
        nodes = max(1, environment.world_size() // max(1, local))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    elif SLURMEnvironment.detect():
        environment = SLURMEnvironment()
        launcher = "SLURM"
        nodes = int(os.environ.get("SLURM_NNODES", "1") or 1)
        attempt = f"{os.environ.get('SLURM_JOB_ID', '')}.{os.environ.get('SLURM_RESTART_COUNT', '0')}"
    else:
        return None
    if environment.world_size() <= 1:
        return None
    # main_address / main_port also export MASTER_ADDR / MASTER_PORT, as Lightning would
    return Launch(
        launcher,
        environment.global_rank(),
        environment.world_size(),
        nodes,
        environment.main_address,
        int(environment.main_port),
        attempt,
    )


def fill_num_nodes(trainer_config: Any, launch: Launch) -> None:
    """`--trainer.num_nodes` defaults to the launcher's node count, so that the launch command says it once."""
    if int(trainer_config.get("num_nodes") or 1) == 1 and launch.num_nodes > 1:
        trainer_config.num_nodes = launch.num_nodes


def check_devices(devices: Any, num_nodes: int, launch: Launch) -> None:
    """Lightning's own check of devices x nodes against the launcher, as one line instead of a traceback."""
    if not isinstance(devices, int) and not (isinstance(devices, str) and devices.isdigit()):
        return  # "auto" or a list: Lightning resolves and checks them
    if int(devices) * num_nodes != launch.world_size:
        raise ConfigError(
            f"{launch.launcher} started {launch.world_size} processes, but --trainer.devices {devices} x "
            f"--trainer.num_nodes {num_nodes} = {int(devices) * num_nodes}; set devices to the processes per node "
            f"({launch.world_size // max(1, num_nodes)} for {num_nodes} nodes)"
        )


def _store(launch: Launch) -> Any:
    """A client of the job's store, or on rank 0 under srun its server (which the process group reuses)."""
    from torch.distributed import TCPStore

    agent_serves = (
        os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        and os.environ.get("MASTER_ADDR") == launch.address
        and os.environ.get("MASTER_PORT") == str(launch.port)
    )
    serve = launch.rank == 0 and not agent_serves
    store = TCPStore(
        launch.address,
        launch.port,
        world_size=launch.world_size if serve else None,
        is_master=serve,
        timeout=timedelta(seconds=AGREE_TIMEOUT_S),
        wait_for_workers=False,
        multi_tenant=True,
    )
    _open_stores.append(store)
    return store


def agree(launch: Launch, decide: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Rank 0 runs `decide` and every rank returns its answer; a user error on rank 0 ends every rank
    with the same one line, instead of leaving the others waiting."""
    store = _store(launch)
    key = f"vitlight/run/{launch.attempt}"
    if launch.rank == 0:
        try:
            answer = decide()
        except VitlightError as error:
            store.set(key, json.dumps({"error": str(error)}))
            raise
        store.set(key, json.dumps(answer))
        return answer
    try:
        answer = json.loads(store.get(key))
    except RuntimeError as error:  # rank 0 never answered (it failed before, or is unreachable)
        raise ConfigError(
            f"rank {launch.rank} of {launch.world_size} ({launch.launcher}): no run identity from rank 0 "
            f"at {launch.address}:{launch.port} within {AGREE_TIMEOUT_S:.0f} s ({str(error).splitlines()[0]})"
        ) from None
    if "error" in answer:
        raise ConfigError(answer["error"])
    return answer
