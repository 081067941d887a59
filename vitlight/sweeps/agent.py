"""The online path: the sweep on the W&B server, run by `wandb agent` processes.

A thin layer over W&B's own tools (there is no server to test it against here): it creates
the sweep from the file as is, records its path in the sweep folder (so that running
`vitlight sweep FILE` again joins the same sweep instead of creating a new one), prints the
`wandb agent` command that other machines can run to join, and starts the agents here.
The W&B agent expands `${interpreter}` to `python` from PATH; the agents started here get the
directory of the Python running vitlight first on PATH, so that `python` is that one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from vitlight.sweeps.spec import SweepSpec

RECORD_FILE = "wandb_sweep.json"


def create_or_join(
    spec: SweepSpec, folder: Path, project: str | None, entity: str | None, say: Callable[[str], None]
) -> str:
    """entity/project/sweep_id of the folder's W&B sweep, created on the server the first time."""
    record = folder / RECORD_FILE
    if record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("digest") == spec.digest():
            say(f"W&B sweep {saved['path']} (recorded in {record}): joining it")
            return saved["path"]
    import wandb

    project = project or spec.project or "vitlight"
    entity = entity or spec.entity or wandb.Api().default_entity
    sweep_id = wandb.sweep(sweep=dict(spec.raw), project=project, entity=entity)
    path = f"{entity}/{project}/{sweep_id}"
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"path": path, "digest": spec.digest(), "file": str(spec.path)}, indent=2))
    return path


def agent_command(path: str, count: int | None) -> list[str]:
    executable = Path(sys.executable).with_name("wandb")
    program = [str(executable)] if executable.is_file() else [sys.executable, "-m", "wandb"]
    return [*program, "agent", *(["--count", str(count)] if count is not None else []), path]


def run_online(
    spec: SweepSpec,
    folder: Path,
    count: int | None,
    workers: int,
    project: str | None,
    entity: str | None,
    say: Callable[[str], None] = print,
) -> int:
    path = create_or_join(spec, folder, project, entity, say)
    say(f"W&B sweep: https://wandb.ai/{path.rsplit('/', 1)[0]}/sweeps/{path.rsplit('/', 1)[1]}")
    say(f"join from other machines (in this repository, with vitlight installed): wandb agent {path}")
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    shares = [None] * workers if count is None else [count // workers + (i < count % workers) for i in range(workers)]
    processes = [subprocess.Popen(agent_command(path, share), env=env) for share in shares if share != 0]
    try:
        codes = [process.wait() for process in processes]
    except KeyboardInterrupt:
        for process in processes:
            process.terminate()
        codes = [process.wait() for process in processes]
        return 130
    return max(codes, default=0)
