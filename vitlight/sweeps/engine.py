"""The offline sweep runner: a W&B sweep file run on Optuna, with its storage in the sweep folder
or in a database that runners on many machines share.

    runs/sweeps/<name>/
      sweep.json       the sweep id (`<name>-<digest of the search>`) and its storage, written once
      sweep.yaml       the sweep file as it was when the sweep started
      optuna.journal   Optuna's journal storage (the default): every runner sharing the folder runs one sweep
      trials/NNNN/     one folder per trial (see vitlight.sweeps.trial)

With `--storage URL` (any Optuna storage URL: postgresql://, mysql://, sqlite:///) the trials live in
that database instead, under the sweep id as the study name; every runner given the same URL works on
the same sweep, whether or not the machines share the sweep folder. A grid is shuffled once, by a seed
taken from the sweep id: trial k is entry k of the same shuffle for every runner, so no point runs twice.

Starting the runner again on the same folder resumes the sweep: finished trials stay done;
a trial whose runner died (its heartbeat stopped, or its process is gone on this host) is
marked failed and its parameters are queued again, so it is rerun from scratch. A trial that
exits with an error, or without the metric, is recorded as failed and the sweep goes on.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from vitlight.errors import ConfigError
from vitlight.files import write_json_atomic
from vitlight.logging_wandb import SWEEP_NAME_ENV
from vitlight.sweeps import space
from vitlight.sweeps.macros import expand, nest
from vitlight.sweeps.spec import SweepSpec, SweepSpecError
from vitlight.sweeps.trial import (
    PROGRESS_FILE,
    find_summaries,
    heartbeat_age,
    last_error_line,
    process_alive,
    read_metric,
    run_trial,
    stop_orphan,
)

INFO_FILE = "sweep.json"
STORAGE_FILE = "optuna.journal"
STALE_AFTER_S = 90.0
PROGRESS_CALLBACK = "--trainer.callbacks+=vitlight.sweeps.progress.ProgressFile"

optuna.logging.set_verbosity(optuna.logging.WARNING)


def open_folder(spec: SweepSpec, folder: Path, storage_url: str | None = None) -> str:
    """Creates the sweep folder (or checks that it holds this sweep, kept in this storage) and returns the sweep id."""
    folder.mkdir(parents=True, exist_ok=True)
    info_path = folder / INFO_FILE
    digest = spec.digest()
    kept_in = redact_url(storage_url) if storage_url else STORAGE_FILE
    if not info_path.exists():
        info = {
            "id": f"{spec.name}-{digest}",
            "name": spec.name,
            "digest": digest,
            "file": str(spec.path),
            "storage": kept_in,
            "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        try:
            with open(info_path, "x") as stream:  # exclusive: two runners starting at once agree on one id
                json.dump(info, stream, indent=2)
            shutil.copyfile(spec.path, folder / "sweep.yaml")
        except FileExistsError:
            pass
    info = json.loads(info_path.read_text())
    if info.get("digest") != digest:
        raise SweepSpecError(
            f"sweep folder {str(folder)!r} holds sweep {info.get('id')!r}, started from another version of "
            f"{spec.path} (its copy: {folder / 'sweep.yaml'}); pass --folder NEW to start a new sweep, or restore the "
            "file to resume"
        )
    recorded = info.get("storage", STORAGE_FILE)
    if recorded != kept_in:  # a runner on another storage would silently start a second sweep
        hint = "leave out --storage" if recorded == STORAGE_FILE else f"pass --storage {recorded} (with its password)"
        raise SweepSpecError(
            f"sweep folder {str(folder)!r} keeps its trials in {recorded}, not {kept_in}; {hint}, "
            f"or pass --folder NEW for a new sweep"
        )
    return info["id"]


def redact_url(url: str) -> str:
    """The storage URL without its password, for output and sweep.json."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def storage(folder: Path, url: str | None = None) -> optuna.storages.BaseStorage:
    """The journal file in the sweep folder, or the database at `url`."""
    if url is None:
        from optuna.storages.journal import JournalFileBackend

        return optuna.storages.JournalStorage(JournalFileBackend(str(folder / STORAGE_FILE)))
    return open_database(url)


def open_database(url: str, attempts: int = 8) -> optuna.storages.RDBStorage:
    """Optuna's RDBStorage; runners that create its tables at the same moment collide, and the loser retries."""
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            # pre-ping: a sweep runs for days, and databases drop idle connections
            return optuna.storages.RDBStorage(url, engine_kwargs={"pool_pre_ping": True})
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError) as error:
            if attempt == attempts - 1:
                raise ConfigError(f"sweep: --storage {redact_url(url)}: {_first_line(error)}") from None
            time.sleep(0.2 + random.random() * 0.5)  # the other runner finishes creating the tables meanwhile
        except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as error:
            raise ConfigError(
                f"sweep: cannot open --storage {redact_url(url)}: {_first_line(error)} "
                f"(valid: an Optuna storage URL such as postgresql://user:password@host/db, "
                f"mysql://user:password@host/db or sqlite:///path/to/file.db)"
            ) from None
    raise AssertionError("unreachable")


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _seed(text: str) -> int:
    return int(hashlib.sha1(text.encode()).hexdigest()[:8], 16)


@dataclass
class RunnerResult:
    started: int = 0
    finished: int = 0
    failed: int = 0
    pruned: int = 0
    stopped: bool = False
    lines: list[str] = field(default_factory=list)


class SweepRunner:
    """Runs trials of one sweep in `workers` threads, each trial a subprocess."""

    def __init__(
        self,
        spec: SweepSpec,
        folder: Path,
        count: int | None = None,
        workers: int = 1,
        interpreter: str = sys.executable,
        poll_s: float = 1.0,
        say: Callable[[str], None] = print,
        storage_url: str | None = None,
    ) -> None:
        self.spec = spec
        self.folder = folder
        self.storage_url = storage_url
        self.count = count
        self.workers = max(1, workers)
        self.interpreter = interpreter
        self.poll_s = poll_s
        self.say = say
        database = open_database(storage_url) if storage_url else None  # a URL that fails leaves no folder behind
        self.sweep_id = open_folder(spec, folder, storage_url)
        self.storage = database or storage(folder)
        self.space = space.search_space(spec)
        self.stop = threading.Event()
        self.result = RunnerResult()
        self._lock = threading.Lock()
        self._claimed = 0
        self._host = socket.gethostname()
        self._token = secrets.token_hex(4)

    # ----- the study --------------------------------------------------------------------
    def study(self, worker: int) -> optuna.Study:
        study = optuna.create_study(
            storage=self.storage, study_name=self.sweep_id, direction=space.direction(self.spec), load_if_exists=True
        )
        if self.spec.method == "grid":  # one shuffle for every runner and worker: trial k is grid entry k
            seed = _seed(self.sweep_id)
        else:  # random and bayes draw differently in each runner and worker
            seed = _seed(f"{self.sweep_id}:{len(study.trials)}:{worker}:{self._token}")
        return optuna.load_study(
            study_name=self.sweep_id,
            storage=self.storage,
            sampler=space.sampler(self.spec, seed),
            pruner=space.pruner(self.spec),
        )

    def trial_dir(self, number: int) -> Path:
        return self.folder / "trials" / f"{number:04d}"

    @staticmethod
    def _replaced(trials: list[FrozenTrial]) -> set[int]:
        """Numbers of trials that were cut off and queued again (the rerun names them)."""
        return {int(t.user_attrs["rerun_of"]) for t in trials if "rerun_of" in t.user_attrs}

    def recover_stale(self, study: optuna.Study) -> None:
        """Marks trials of dead runners failed and queues their parameters again."""
        trials = study.get_trials(deepcopy=False)
        for trial in trials:
            if trial.state != TrialState.RUNNING or trial.user_attrs.get("runner") == self._token:
                continue
            age = heartbeat_age(self.trial_dir(trial.number))
            if "heartbeat" in trial.user_attrs:  # kept in the database: runners elsewhere may not share the folder
                in_storage = time.time() - float(trial.user_attrs["heartbeat"])
                age = in_storage if age is None else min(age, in_storage)
            if age is None and trial.datetime_start is not None:  # asked for, never started
                age = time.time() - trial.datetime_start.timestamp()
            same_host = trial.user_attrs.get("host") == self._host
            dead = (
                same_host
                and "runner_pid" in trial.user_attrs
                and not process_alive(int(trial.user_attrs["runner_pid"]))
            )
            if not dead and (age is None or age < STALE_AFTER_S):
                continue
            if same_host and "trial_pid" in trial.user_attrs:
                stop_orphan(int(trial.user_attrs["trial_pid"]), str(self.trial_dir(trial.number)))
            try:
                study.tell(trial.number, state=TrialState.FAIL)
            except (RuntimeError, ValueError):  # another runner recovered it first
                continue
            study.enqueue_trial(trial.params, user_attrs={"rerun_of": trial.number})
            record = self.trial_dir(trial.number) / "trial.json"
            if record.is_file():
                write_json_atomic(record, {**json.loads(record.read_text()), "state": "cut off"})
            self.say(f"trial {trial.number}: cut off (its runner stopped); queued again")

    def exhausted(self, study: optuna.Study) -> bool:
        trials = study.get_trials(deepcopy=False)
        if any(t.state == TrialState.WAITING for t in trials):
            return False
        replaced = self._replaced(trials)
        live = [t for t in trials if t.number not in replaced]
        if self.spec.run_cap is not None and len(live) >= self.spec.run_cap:
            return True
        if self.spec.method == "grid":
            covered = {tuple(sorted(t.params.items())) for t in live if len(t.params) == len(self.space)}
            return len(covered) >= self.spec.grid_size()
        return False

    # ----- running ----------------------------------------------------------------------
    def run(self) -> RunnerResult:
        threads = [
            threading.Thread(target=self._worker, args=(index,), name=f"sweep-worker-{index}", daemon=True)
            for index in range(self.workers)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.5)
        self.result.stopped = self.stop.is_set()
        return self.result

    def _claim(self) -> bool:
        with self._lock:
            if self.stop.is_set() or (self.count is not None and self._claimed >= self.count):
                return False
            self._claimed += 1
            return True

    def _worker(self, index: int) -> None:
        study = self.study(index)
        while self._claim():
            with self._lock:  # one ask at a time in this process: the sampler sees the others' trials
                self.recover_stale(study)
                if self.exhausted(study):
                    self.say("sweep complete: no trials left to run")
                    return
                trial = study.ask(self.space)
            self._run(study, trial)

    def _run(self, study: optuna.Study, trial: optuna.Trial) -> None:
        spec, number = self.spec, trial.number
        trial_dir = self.trial_dir(number)
        trial_dir.mkdir(parents=True, exist_ok=True)
        values = space.trial_values(spec, trial.params)
        argv = expand(spec, values, self.interpreter, json_file=trial_dir / "args.json")
        argv += [f"--runs_dir={trial_dir}"]
        if spec.subcommand == "fit" and spec.hyperband is not None:
            argv.append(PROGRESS_CALLBACK)
        shown = " ".join(f"{p.name}={values[p.path]}" for p in spec.searched)
        for key, value in (
            ("runner", self._token),
            ("host", self._host),
            ("runner_pid", os.getpid()),
            ("values", {".".join(k): v for k, v in values.items()}),
            ("argv", argv),
        ):
            trial.set_user_attr(key, value)
        write_json_atomic(
            trial_dir / "trial.json",
            {
                "number": number,
                "sweep_id": self.sweep_id,
                "values": trial.user_attrs["values"],
                "argv": argv,
                "state": "running",
            },
        )
        self.say(f"trial {number}: started  {shown}")
        self.result.started += 1
        report = self._reporter(trial) if spec.hyperband is not None else None
        beat = (lambda: trial.set_user_attr("heartbeat", time.time())) if self.storage_url else None
        outcome = run_trial(
            argv,
            trial_dir,
            self._env(trial_dir, values),
            spec.metric,
            self.stop,
            report=report,
            on_start=lambda pid: trial.set_user_attr("trial_pid", pid),
            poll_s=self.poll_s,
            on_beat=beat,
        )
        self._record(study, trial, trial_dir, outcome)

    def _env(self, trial_dir: Path, values: dict[tuple[str, ...], Any]) -> dict[str, str]:
        """The trial's environment: its W&B run logs offline (unless told otherwise) in the sweep's group, and gets
        the trial's parameters as flat config keys from a file in the form `wandb agent` writes (so an offline
        trial's W&B config is an agent run's)."""
        from wandb.sdk.lib import config_util

        params = trial_dir / "wandb_params.yaml"
        config_util.save_config_file_from_dict(str(params), {k: {"value": v} for k, v in nest(values).items()})
        env = dict(os.environ)
        for name in ("WANDB_RUN_ID", "WANDB_SWEEP_ID"):
            env.pop(name, None)
        env["WANDB_SWEEP_PARAM_PATH"] = str(params)
        env["WANDB_RUN_GROUP"] = self.spec.name
        env[SWEEP_NAME_ENV] = self.spec.name
        env["VITLIGHT_PROGRESS_FILE"] = str(trial_dir / PROGRESS_FILE)
        env["VITLIGHT_SWEEP_ID"] = self.sweep_id
        env.setdefault("WANDB_MODE", "offline")  # the offline engine: trials log offline unless told otherwise
        return env

    def _reporter(self, trial: optuna.Trial) -> Callable[[float, int], bool]:
        def report(value: float, iteration: int) -> bool:
            trial.report(value, iteration)
            return trial.should_prune()

        return report

    def _record(self, study: optuna.Study, trial: optuna.Trial, trial_dir: Path, outcome) -> None:
        number = trial.number
        summaries = find_summaries(trial_dir)
        summary = json.loads(summaries[-1].read_text()) if summaries else {}
        value = read_metric(summary, self.spec.metric) if summary else None
        trial.set_user_attr("run_dirs", [str(p.parent) for p in summaries])
        trial.set_user_attr("wall_time_s", outcome.wall_time_s)
        record: dict[str, Any] = {
            "state": "failed",
            "value": value,
            "exit_code": outcome.exit_code,
            "wall_time_s": outcome.wall_time_s,
            "run_dirs": [str(p.parent) for p in summaries],
        }
        if outcome.stopped:
            study.tell(trial, state=TrialState.FAIL)
            study.enqueue_trial(trial.params, user_attrs={"rerun_of": number})
            record["state"] = "cut off"
            self.say(f"trial {number}: stopped with the runner; queued again for the next start")
        elif outcome.pruned:
            study.tell(trial, state=TrialState.PRUNED)
            record["state"] = "pruned"
            self.result.pruned += 1
            self.say(
                f"trial {number}: stopped early by hyperband after {len(outcome.reports)} reports "
                f"({self.spec.metric} {outcome.reports[-1]:.4f})"
            )
        elif outcome.exit_code == 0 and value is not None and summary.get("status") == "finished":
            study.tell(trial, value)
            record["state"] = "finished"
            self.result.finished += 1
            self.say(f"trial {number}: finished {self.spec.metric}={value:.4f} ({outcome.wall_time_s:.0f} s)")
        else:
            if outcome.exit_code == 0:
                reason = f"no {self.spec.metric} in its summary.json" if summaries else "no summary.json written"
            else:
                reason = f"exit code {outcome.exit_code}: {last_error_line(trial_dir)}"
            trial.set_user_attr("error", reason)
            study.tell(trial, state=TrialState.FAIL)
            record["error"] = reason
            self.result.failed += 1
            self.say(f"trial {number}: FAILED ({reason}); see {trial_dir / 'output.log'}")
        previous = json.loads((trial_dir / "trial.json").read_text())
        write_json_atomic(trial_dir / "trial.json", {**previous, **record})


def describe(folder: Path, spec: SweepSpec, storage_url: str | None = None) -> list[str]:
    """One line per trial of the sweep in `folder` (or in the database at `storage_url`), in trial order."""
    study = optuna.load_study(study_name=open_folder(spec, folder, storage_url), storage=storage(folder, storage_url))
    trials = study.get_trials(deepcopy=False)
    replaced = SweepRunner._replaced(trials)
    lines = []
    for trial in sorted(trials, key=lambda t: t.number):
        state = "cut off" if trial.number in replaced else trial.state.name.lower()
        value = (
            f"{spec.metric}={trial.value:.4f}" if trial.value is not None and trial.state == TrialState.COMPLETE else ""
        )
        values = trial.user_attrs.get("values", {})
        searched = " ".join(
            f"{k}={v}" for k, v in values.items() if any(p.name == k and not p.is_constant for p in spec.parameters)
        )
        lines.append(f"  {trial.number:4d}  {state:9s} {value:22s} {searched}")
    return lines
