"""`vitlight sweep FILE`: run a W&B sweep file, on the W&B server or offline on Optuna.

    vitlight sweep sweeps/scaling_data_mini.yaml --workers 1
    vitlight sweep sweeps/vit_hparams_bayes.yaml --count 20 --workers 2
    vitlight sweep sweeps/scaling_data.yaml --check        # validate only
    vitlight sweep sweeps/scaling_data.yaml --estimate --device h200   # trials, FLOPs, hours; runs nothing
    vitlight sweep sweeps/scaling_data.yaml --offline --storage postgresql://user:pw@dbhost/sweeps

The file is checked first (method, distributions, and every parameter name with the
command's own parser); a bad file ends in one line listing the bad names. With W&B
credentials (and without --offline) the sweep is created on the server and `wandb agent`s
run it; otherwise it runs on Optuna with its storage in the sweep folder (default
runs/sweeps/<name>/), which several runners, here or on machines sharing the folder, can
work on together, or, with --storage URL, in a database that runners on many machines
share (compute nodes without internet). Starting it again resumes it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

from vitlight.cli_errors import CommandParser
from vitlight.errors import ConfigError

# trials/NNNN/<experiment>/<run id>/wandb/offline-run-*: every W&B run of a trial, a pipeline's stages included
RUN_FOLDERS = "trials/*/*/*/wandb/offline-run-*"


def parser() -> argparse.ArgumentParser:
    p = CommandParser.from_docstring("vitlight sweep", __doc__)
    p.add_argument("file", help="a W&B sweep YAML (sweeps/*.yaml)")
    p.add_argument(
        "--count",
        type=int,
        default=None,
        help="trials this runner starts (default: until the sweep is done; random and bayes without run_cap never are)",
    )
    p.add_argument("--workers", type=int, default=1, help="trials run at once by this runner")
    p.add_argument("--folder", default=None, help="sweep folder (default: SWEEPS_DIR/<sweep name>)")
    p.add_argument("--sweeps_dir", default="runs/sweeps", help="where sweep folders go")
    p.add_argument("--offline", action="store_true", help="run on Optuna here even with W&B credentials")
    p.add_argument(
        "--storage",
        default=None,
        metavar="URL",
        help="Optuna storage URL shared by every runner (postgresql://, mysql://, sqlite:///...; "
        "implies --offline; default: the journal file in the sweep folder)",
    )
    p.add_argument("--check", action="store_true", help="only check the file, run nothing")
    p.add_argument(
        "--estimate", action="store_true", help="only print the trials, their counted FLOPs and the hours on --device"
    )
    p.add_argument(
        "--device", default="h200", help="with --estimate: h200, a100 or cpu (this CPU's matmul rate, measured)"
    )
    p.add_argument(
        "--mfu", type=float, default=None, help="with --estimate: the model FLOPs utilization to assume (default 0.3)"
    )
    p.add_argument(
        "--bench",
        default=None,
        metavar="RESULT.json",
        help="with --estimate: a bench/gpu.py JSON result (its chip and measured MFU)",
    )
    p.add_argument("--project", default=None, help="W&B project (online; default: the file's, else vitlight)")
    p.add_argument("--entity", default=None, help="W&B entity (online; default: the file's, else your default)")
    return p


def _say(line: str) -> None:
    print(line, flush=True)


def main(argv: list[str]) -> int:
    from vitlight.logging_wandb import choose_wandb_mode
    from vitlight.sweeps.keys import check_keys
    from vitlight.sweeps.spec import load_spec

    args = parser().parse_args(argv)
    if args.count is not None and args.count < 1:
        raise ConfigError(f"sweep: --count must be at least 1, got {args.count}")
    if args.workers < 1:
        raise ConfigError(f"sweep: --workers must be at least 1, got {args.workers}")
    spec = load_spec(args.file)
    if args.estimate:
        from vitlight.sweeps.estimate import device_rate, estimate, report_lines

        rate = device_rate(args.device, args.mfu, args.bench)
        for line in report_lines(estimate(spec), rate):
            _say(line)
        return 0
    check_keys(spec)
    searched = ", ".join(p.name for p in spec.searched) or "nothing"
    _say(
        f"{spec.path}: {spec.method} over {searched}; metric {spec.metric} ({spec.goal}); "
        f"{len(spec.parameters)} parameters accepted by `vitlight {spec.subcommand}`"
    )
    if not any(p.name == "sweep_name" for p in spec.parameters):
        _say(
            f"note: no `sweep_name: {{value: {spec.name}}}` parameter: runs under `wandb agent` will not carry the "
            "sweep's name, which `vitlight dashboard` selects runs by"
        )
    if args.check:
        return 0
    folder = Path(args.folder or Path(args.sweeps_dir) / spec.name).expanduser()
    mode, reason = choose_wandb_mode()
    if mode == "online" and not args.offline and not args.storage:  # a storage URL means the offline engine
        from vitlight.sweeps.agent import run_online

        _say(f"W&B: online ({reason})")
        return run_online(spec, folder, args.count, args.workers, args.project, args.entity, _say)
    why = "--offline" if args.offline else "--storage" if args.storage else reason
    return _run_offline(spec, folder, args.count, args.workers, why, args.storage)


def _run_offline(
    spec, folder: Path, count: int | None, workers: int, reason: str, storage_url: str | None = None
) -> int:
    from vitlight.sweeps.engine import SweepRunner, describe, redact_url

    runner = SweepRunner(spec, folder, count=count, workers=workers, say=_say, storage_url=storage_url)
    kept = f"storage {redact_url(storage_url)}" if storage_url else "storage in the folder"
    _say(f"sweep {runner.sweep_id}: offline on Optuna ({reason}); folder {folder}; {kept}; W&B group {spec.name}")
    if storage_url:
        _say(
            f"  join from any machine that reaches the database: vitlight sweep {spec.path} --offline --storage "
            f"{redact_url(storage_url)}"
        )
    else:
        _say(
            f"  resume or join (another shell or a machine sharing the folder): vitlight sweep {spec.path} --folder "
            f"{folder} --offline"
        )

    def stop(signum, frame) -> None:
        _say(f"stopping ({signal.Signals(signum).name}): the running trials end now and are queued again")
        runner.stop.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = runner.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _say(
        f"this runner: {result.started} started, {result.finished} finished, {result.failed} failed, {result.pruned} "
        "stopped early"
    )
    _say("trials of the sweep:")
    for line in describe(folder, spec, storage_url):
        _say(line)
    if os.environ.get("WANDB_MODE", "offline") == "offline":  # the engine's trials log offline unless told otherwise
        _say(f"its W&B runs (group and tag {spec.name}, config sweep_name={spec.name}); upload them all with:")
        _say(sync_command(folder))
    return 130 if result.stopped else 0


def sync_command(folder: Path) -> str:
    """The one `wandb sync` command that uploads every offline W&B run of the sweep in `folder` (wandb sync takes
    run folders and does not look below them; every run folder of a trial sits at the same depth)."""
    import shlex

    return f"wandb sync {shlex.quote(str(folder))}/{RUN_FOLDERS}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
