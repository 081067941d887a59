"""vitlight's LightningCLI for fit/validate/test/predict: the parser, the run folder, the reliability
callbacks and the summary.json every run writes. `vitlight.cli.main` dispatches to `run_lightning`."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities.exceptions import SIGTERMException

import vitlight.data  # noqa: F401  (registers the data modules as --data choices)
import vitlight.tasks  # noqa: F401  (registers the tasks as --model choices)
from vitlight import cli_errors
from vitlight.checkpoints import ConfigInCheckpoint
from vitlight.cli_errors import format_parse_error
from vitlight.cli_helpers import as_list, class_path, experiment_name, finish_wandb, model_description, scrub_api_key
from vitlight.cluster import Launch, agree, check_devices, external_launch, fill_num_nodes
from vitlight.config_files import check_config_files, install_yaml_loader
from vitlight.console import quiet_trainer
from vitlight.data.base import ImageDataModule
from vitlight.errors import ConfigError, exit_with_one_line
from vitlight.files import check_folder_name, remove_stale_temporaries, write_atomic
from vitlight.logging_wandb import apply_wandb_mode, join_sweep, redact_secrets, sweep_name, update_unlocked
from vitlight.precision import apply_matmul_precision, resolve_precision, will_use_cuda
from vitlight.reliability import (
    AtomicCheckpointIO,
    NonFiniteLossGuard,
    PreemptionCheckpoint,
    RandomStates,
    StepCheckpoint,
)
from vitlight.run_lock import RunLock
from vitlight.run_start import (
    RunStarted,
    check_checkpoint,
    check_room,
    is_state_dict_mismatch,
    overridden_line,
    restore_links,
    unfit_error,
    wandb_links,
)
from vitlight.runs import (
    LAST_CHECKPOINT,
    BestValidationMetrics,
    RunFolder,
    latest_run,
    new_run_id,
    new_wandb_id,
    wandb_id_of,
    write_start_record,
)
from vitlight.wandb_summaries import BestSummaries

# Passed to the processes that Lightning launches for DDP, so that every rank writes one run folder.
RUN_ID_ENV, WANDB_ID_ENV = "VITLIGHT_RUN_ID", "VITLIGHT_WANDB_ID"


class VitlightArgumentParser(LightningArgumentParser):
    """Reports a bad argument or config in one line on stderr and exits 2 (`--help` shows the usage)."""

    def dump(self, *args: Any, **kwargs: Any) -> str:
        """Every dumped config (--print_config, config.yaml) with secrets redacted."""
        text = super().dump(*args, **kwargs)
        try:
            return yaml.safe_dump(redact_secrets(yaml.safe_load(text)), sort_keys=False)
        except yaml.YAMLError:
            return text

    def error(self, message: str, ex: Exception | None = None) -> None:  # type: ignore[override]
        options = getattr(self, "_option_string_actions", {}).keys()
        sys.stderr.write(f"vitlight: error: {format_parse_error(str(message), options)}\n")
        sys.exit(2)


class RedactedSaveConfig(SaveConfigCallback):
    """Writes the resolved config.yaml into the run folder (secrets redacted, atomically) and sends it, nested,
    to W&B: when the run gets past its start checks (`save_now`), not at set-up, so that a resume that
    fails to start leaves the config.yaml of the run it named as it was."""

    def _resolved(self) -> dict[str, Any]:
        return yaml.safe_load(self.parser.dump(self.config, skip_none=False, skip_validation=True))

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._log_dir = trainer.log_dir  # a collective call under DDP: every rank must make it

    def save_now(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.already_saved:
            return
        if trainer.is_global_zero:
            config_path = Path(getattr(self, "_log_dir", None) or ".") / self.config_filename
            text = yaml.safe_dump(self._resolved(), sort_keys=False).encode()
            write_atomic(config_path, lambda stream: stream.write(text), what="config")
            self.save_config(trainer, pl_module, trainer.state.stage or "fit")
            self.already_saved = True
        self.already_saved = trainer.strategy.broadcast(self.already_saved)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        resolved = self._resolved()
        resolved.pop("config", None)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                update_unlocked(logger.experiment.config, resolved)


class VitlightCLI(LightningCLI):
    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        self.run_folder: RunFolder | None = None
        self.launch: Launch | None = None
        self.best_validation = BestValidationMetrics()
        self.summary: dict[str, Any] = {}
        self.start_record: dict[str, Any] = {}
        self.lock: RunLock | None = None
        super().__init__(
            model_class=L.LightningModule,
            datamodule_class=ImageDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=RedactedSaveConfig,
            save_config_kwargs={"overwrite": True},
            parser_class=VitlightArgumentParser,
            seed_everything_default=0,
            parser_kwargs={"prog": "vitlight"},
            auto_configure_optimizers=False,
            args=args,
            run=run,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument(
            "--experiment",
            type=str | None,
            default=None,
            help="Experiment name (default: the first non-shared config file's name).",
        )
        parser.add_argument(
            "--runs_dir", type=str, default="runs", help="Folder that holds runs/<experiment>/<run id>/."
        )
        parser.add_argument(
            "--sweep_name",
            type=str | None,
            default=None,
            help="The sweep this run is a trial of (every sweep file passes it): W&B group, tag and config key.",
        )
        parser.add_argument(
            "--checkpoint_every_n_steps",
            type=int,
            default=0,
            help="Also write last.ckpt every N optimizer steps, mid-epoch (0: by the clock alone).",
        )
        parser.add_argument(
            "--checkpoint_every_minutes",
            type=float,
            default=10.0,
            help="Also write last.ckpt every this many minutes of training, mid-epoch (0: off).",
        )
        for attribute in ("num_classes", "image_size", "channels"):
            parser.link_arguments(f"data.{attribute}", f"model.init_args.{attribute}", apply_on="instantiate")

    # ----- the run folder -------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand]
        experiment = check_folder_name(config.experiment or experiment_name(config.get("config")), "experiment")
        runs_dir = Path(config.runs_dir).expanduser()
        self.launch = external_launch()
        if self.launch is not None:  # torchrun or srun started every process: rank 0 decides for the job
            fill_num_nodes(config.trainer, self.launch)
            check_devices(config.trainer.get("devices"), int(config.trainer.num_nodes), self.launch)
            identity = agree(self.launch, lambda: self._run_identity(config, runs_dir, experiment))
        else:
            identity = self._run_identity(config, runs_dir, experiment)
        run_id, wandb_id = identity["run_id"], identity["wandb_id"]
        if identity["ckpt_path"] is not None:
            config.ckpt_path = identity["ckpt_path"]
            if self.launch is None or self.launch.rank == 0:
                print(
                    f"vitlight: resuming run {experiment}/{run_id} (W&B run {wandb_id}) from {config.ckpt_path}",
                    file=sys.stderr,
                )
        if self.launch is None and os.environ.get("LOCAL_RANK") and os.environ.get(RUN_ID_ENV):
            # a DDP worker that Lightning re-launched: join rank 0's run folder and W&B run
            run_id, wandb_id = os.environ[RUN_ID_ENV], os.environ[WANDB_ID_ENV]
        os.environ[RUN_ID_ENV], os.environ[WANDB_ID_ENV] = run_id, wandb_id
        self.run_folder = RunFolder(runs_dir, experiment, run_id, wandb_id)
        self.run_folder.check_writable()
        config.experiment = experiment
        trainer = config.trainer
        trainer.precision = resolve_precision(trainer.get("precision"), trainer.get("accelerator", "auto"))
        self.summary["precision"] = trainer.precision
        self.summary["float32_matmul_precision"] = apply_matmul_precision(trainer.get("accelerator", "auto"))
        scrub_api_key(config)  # nothing built from the config (W&B notes, tags, ...) may carry the key
        sys.argv[:] = scrub_api_key(list(sys.argv))  # W&B records the command line in its run files
        self._point_trainer_at_run_folder(config.trainer)
        config.sweep_name = config.get("sweep_name") or sweep_name()
        join_sweep(config.sweep_name)
        mode, reason = apply_wandb_mode()
        if self._uses_wandb(config.trainer) and (self.launch is None or self.launch.rank == 0):  # said once per job
            where = self.run_folder.path / "wandb"
            if mode == "offline":
                print(
                    f"W&B: offline ({reason}); run files in {where}; upload later with `wandb sync "
                    f"{where}/offline-run-*`",
                    file=sys.stderr,
                )
            else:
                print(f"W&B: {mode} ({reason}); run files in {where}", file=sys.stderr)

    def _run_identity(self, config: Any, runs_dir: Path, experiment: str) -> dict[str, Any]:
        """A new run, or with `--ckpt_path last` the latest run of the experiment and its last.ckpt."""
        if self.subcommand == "fit" and config.get("ckpt_path") == "last":
            run_id, wandb_id, checkpoint = self._resume_target(runs_dir, experiment)
            return {"run_id": run_id, "wandb_id": wandb_id, "ckpt_path": checkpoint}
        # an online `wandb agent` names the run it expects through WANDB_RUN_ID
        return {"run_id": new_run_id(), "wandb_id": os.environ.get("WANDB_RUN_ID") or new_wandb_id(), "ckpt_path": None}

    def _resume_target(self, runs_dir: Path, experiment: str) -> tuple[str, str, str]:
        previous = latest_run(runs_dir, experiment)
        if previous is None:
            raise ConfigError(
                f"--ckpt_path last: nothing to resume for experiment {experiment!r} (no run folder under "
                f"{runs_dir / experiment} holds checkpoints/last.ckpt)"
            )
        # under `wandb agent` the run the agent scheduled carries the trial, resumed or not
        wandb_id = os.environ.get("WANDB_RUN_ID") or wandb_id_of(previous) or new_wandb_id()
        return previous.name, wandb_id, str(previous / LAST_CHECKPOINT)

    def _uses_wandb(self, trainer_config: Any) -> bool:
        return any(class_path(entry).endswith("WandbLogger") for entry in as_list(trainer_config.get("logger")))

    def _point_trainer_at_run_folder(self, trainer_config: Any) -> None:
        run = self.run_folder
        trainer_config.default_root_dir = str(run.path)
        for entry in as_list(trainer_config.get("logger")):
            if class_path(entry).endswith("WandbLogger"):
                entry.init_args.save_dir = str(run.path)
                entry.init_args.id = run.wandb_id
                entry.init_args.resume = "allow"  # online, `--ckpt_path last` continues the same W&B run
                entry.init_args.name = f"{run.experiment}/{run.run_id}"
                entry.init_args.project = entry.init_args.get("project") or "vitlight"
        for entry in as_list(trainer_config.get("callbacks")):
            if class_path(entry).endswith("ModelCheckpoint") and not entry.init_args.get("dirpath"):
                entry.init_args.dirpath = str(run.checkpoints)

    # ----- running and recording ----------------------------------------------------------
    def resolved_config(self) -> dict[str, Any]:
        """The whole resolved config as plain nested values, secrets redacted."""
        text = self._parser(self.subcommand).dump(self.config[self.subcommand], skip_none=False, skip_validation=True)
        resolved = yaml.safe_load(text)
        resolved.pop("config", None)
        return resolved

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        trainer_config = self._get(self.config_init, "trainer", default={})
        if not trainer_config.get("plugins"):
            kwargs.setdefault("plugins", [AtomicCheckpointIO()])
        if will_use_cuda(trainer_config.get("accelerator", "auto")):
            self._refresh_progress_bar_when_logging(trainer_config)
        trainer = super().instantiate_trainer(**kwargs)
        quiet_trainer(trainer)
        return trainer

    @staticmethod
    def _refresh_progress_bar_when_logging(trainer_config: dict[str, Any]) -> None:
        """The progress bar reads `train/loss` with `.item()` each refresh, a device sync: on CUDA it
        refreshes when a log is due, not every step (unless the config brings its own bar)."""
        from lightning.pytorch.callbacks import ProgressBar, TQDMProgressBar

        if trainer_config.get("enable_progress_bar") is False:
            return
        callbacks = trainer_config.get("callbacks") or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if not any(isinstance(callback, ProgressBar) for callback in callbacks):
            every = int(trainer_config.get("log_every_n_steps") or 50)
            trainer_config["callbacks"] = [*callbacks, TQDMProgressBar(refresh_rate=every)]

    def _reliability_callbacks(self) -> list:
        checkpoints = str(self.run_folder.checkpoints)
        every = int(self.config[self.subcommand].get("checkpoint_every_n_steps") or 0)
        minutes = float(self.config[self.subcommand].get("checkpoint_every_minutes") or 0.0)
        # the loss guard sees each step's loss before the step checkpoint saves (and checks it on every save)
        callbacks = [NonFiniteLossGuard(checkpoints), RandomStates(), PreemptionCheckpoint(checkpoints)]
        step_checkpoint = StepCheckpoint(checkpoints, every_n_train_steps=every, every_n_minutes=minutes)
        return callbacks + ([step_checkpoint] if every > 0 or minutes > 0 else [])

    def _parse_ckpt_path(self) -> None:
        """LightningCLI would apply a `--ckpt_path` checkpoint's hyperparameters over the command line (and
        read the file with a traceback on damage); vitlight compares them in its start checks instead."""

    def _check_checkpoint(self, subcommand: str) -> tuple[str | None, list[tuple[str, Any, Any]]]:
        path = self.config[subcommand].get("ckpt_path")
        if not path or str(path) in ("best", "last", "hpc") or str(path).startswith("registry"):
            return None, []
        differences = check_checkpoint(str(path), self.resolved_config().get("model") or {}, self.model)
        if differences and self.trainer.is_global_zero:
            print(overridden_line(differences), file=sys.stderr)
        return str(path), differences

    def _take_run_folder(self) -> bool:
        """Rank 0 creates and locks the run folder, then removes the temporaries a killed process left in it;
        True when this call created the folder."""
        run = self.run_folder
        created = not run.path.exists()
        run.create()
        try:
            self.lock = RunLock(run.path).acquire()
        except Exception:
            if created:
                shutil.rmtree(run.path, ignore_errors=True)
            raise
        removed = remove_stale_temporaries(run.path, run.checkpoints)
        if removed:
            print(
                f"vitlight: removed {len(removed)} temporary file(s) left by a killed process in {run.path}",
                file=sys.stderr,
            )
        return created

    def _record_start(self, trainer: L.Trainer) -> None:
        """The run got past its start checks (data set up, checkpoint loaded): its record may change now."""
        if trainer.is_global_zero:  # the run's identity is on disk before any work, whatever ends it
            seed = self.config[self.subcommand].get("seed_everything")
            self.start_record = write_start_record(self.run_folder, self.subcommand, seed)
        for callback in trainer.callbacks:
            if isinstance(callback, RedactedSaveConfig):
                callback.save_now(trainer, trainer.lightning_module)

    def _run_subcommand(self, subcommand: str) -> None:
        ckpt_path, differences = self._check_checkpoint(subcommand)
        relaunched = self.launch is None and os.environ.get("LOCAL_RANK", "0") != "0"  # a DDP worker Lightning started
        owner = self.trainer.is_global_zero and not relaunched and (self.launch is None or self.launch.rank == 0)
        if owner and ckpt_path and subcommand == "fit" and self.run_folder.path.is_dir():
            check_room(self.run_folder.path, ckpt_path)
        created = self._take_run_folder() if owner else False  # rank 0 only: other nodes may not share the disk
        links = wandb_links(self.run_folder.path) if owner else {}
        started = RunStarted(self._record_start)
        extra = [started, self.best_validation, ConfigInCheckpoint(self.resolved_config()), BestSummaries()]
        if subcommand == "fit":
            extra += self._reliability_callbacks()
        self.trainer.callbacks[:0] = extra  # before the checkpoint callbacks, which Lightning also moves last
        began = time.time()
        status = "failed"
        try:
            super()._run_subcommand(subcommand)
            status = "interrupted" if self.trainer.interrupted else "finished"
        except (KeyboardInterrupt, SystemExit, SIGTERMException):
            status = "interrupted"
            raise
        except RuntimeError as error:
            if ckpt_path and not started.started and is_state_dict_mismatch(error):
                raise unfit_error(ckpt_path, differences, error) from None
            raise
        finally:
            try:
                if started.started:
                    self.summary["status"] = status
                    self.summary["wall_time_s"] = round(time.time() - began, 3)
                    self._write_summary(subcommand)
            finally:
                attempt = finish_wandb(self.trainer, failed=status != "finished")
                if owner and not started.started:  # nothing of a run that failed its start checks stays behind
                    leftover = self.run_folder.path if created else attempt
                    if leftover is not None:
                        shutil.rmtree(leftover, ignore_errors=True)
                    restore_links(links)
                if self.lock is not None:
                    self.lock.release()

    def after_fit(self) -> None:
        if self.trainer.interrupted:
            return
        checkpoint, which = self._checkpoint_to_test()
        self.summary["tested_checkpoint"] = {"which": which, "path": checkpoint}
        if self.trainer.is_global_zero:
            print(f"vitlight: testing checkpoint ({which}): {checkpoint or 'final weights'}", file=sys.stderr)
        results = self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=checkpoint, verbose=True)
        self.summary["test"] = results[0] if results else {}

    def after_test(self) -> None:
        results = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("test/")}
        self.summary["test"] = results

    def _checkpoint_to_test(self) -> tuple[str | None, str]:
        # the experiment's ModelCheckpoint (the one that monitors), not the step checkpoint
        callbacks = [c for c in self.trainer.checkpoint_callbacks if not isinstance(c, StepCheckpoint)]
        callback = next((c for c in callbacks if getattr(c, "monitor", None)), callbacks[0] if callbacks else None)
        has_validation = bool(self.best_validation.metrics)
        if callback is not None and has_validation and callback.best_model_path:
            return callback.best_model_path, f"best by {callback.monitor}"
        if callback is not None and callback.last_model_path:
            return callback.last_model_path, "last"
        return None, "final weights in memory (no checkpoint saved)"

    def _write_summary(self, subcommand: str) -> None:
        run = self.run_folder
        if run is None or not self.trainer.is_global_zero:
            return
        datamodule = self.datamodule
        data = datamodule.data_summary() if hasattr(datamodule, "data_summary") else {}
        summary = {
            **self.start_record,  # identity, start time, seed, commit, packages, hardware
            "status": self.summary.get("status", "failed"),
            "precision": self.summary.get("precision"),
            "float32_matmul_precision": self.summary.get("float32_matmul_precision"),
            "world_size": self.trainer.world_size,
            "wall_time_s": self.summary.get("wall_time_s"),
            "train_size": data.get("train_size"),
            "data": data,
            "model": model_description(self.model),
            "global_step": self.trainer.global_step,
            "epochs": self.trainer.current_epoch,
            "best_validation": dict(self.best_validation.metrics),
            "best_validation_epoch": self.best_validation.epoch,
            "tested_checkpoint": self.summary.get("tested_checkpoint"),
            "test": self.summary.get("test", {}),
            "test_per_class_accuracy": getattr(self.model, "test_per_class_accuracy", None) or None,
        }
        run.write_summary(summary)
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger) and logger._experiment is not None:
                logger.experiment.summary.update({"status": summary["status"], **summary["test"]})


def run_lightning(argv: list[str] | None) -> int:
    """`vitlight fit|validate|test|predict ...` (argv None: sys.argv); a user's error ends in one line on stderr."""
    given = list(sys.argv[1:] if argv is None else argv)
    cli_errors.user_argv = given  # parse errors name the flags as the user typed them
    # a log file that cannot be written (W&B's debug.log on a full disk) must not print a traceback per
    # message: vitlight's own writes into the same folder end the run with one line naming the disk
    logging.raiseExceptions = False
    try:
        check_config_files(given)
        install_yaml_loader()
        VitlightCLI(args=argv)
    except SIGTERMException:
        sys.stderr.write(
            "vitlight: stopped by SIGTERM; last.ckpt saved in the run folder; resume with --ckpt_path last\n"
        )
        return 143
    except Exception as error:
        return exit_with_one_line(error)
    return 0
