"""A value of the wrong type or outside the valid set: one line naming the key, what is expected and what was given.

The table runs each mistake through the parser of `vitlight fit` (built once) and the formatter
that `vitlight` prints with; two rows also run through `vitlight.cli.main` to check that this
line is exactly what the command prints.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from tests.conftest import EXPERIMENTS
from vitlight.cli import main
from vitlight.cli_errors import format_parse_error
from vitlight.sweeps.keys import _ParseFailure, fit_parser

QUICKSTART = str(EXPERIMENTS / "quickstart.yaml")
PRECISIONS = "64, 32, 16, transformer-engine, transformer-engine-float16, 16-true, 16-mixed, bf16-true, bf16-mixed, 32-true, 64-true, bf16"

# (arguments after `fit --config quickstart.yaml`, the exact line after "vitlight: error: ")
MISTAKES: list[tuple[list[str], str]] = [
    (
        ["--model.init_args.optimizer.init_args.lr", "abc"],
        "--model.init_args.optimizer.init_args.lr: expected a float, got 'abc'",
    ),
    (["--model.optimizer.lr=abc"], "--model.optimizer.lr: expected a float, got 'abc'"),
    (
        ["--model.init_args.optimizer.init_args.weight_decay", "-"],
        "--model.init_args.optimizer.init_args.weight_decay: expected a float, got '-'",
    ),
    (
        ["--model.init_args.optimizer.init_args.betas", "abc"],
        "--model.init_args.optimizer.init_args.betas: expected a list such as [x, y], got 'abc'",
    ),
    (["--model.init_args.label_smoothing", "x"], "--model.init_args.label_smoothing: expected a float, got 'x'"),
    (["--trainer.max_epochs", "many"], "--trainer.max_epochs: expected an int or null, got 'many'"),
    (["--trainer.max_epochs=1.5"], "--trainer.max_epochs: expected an int or null, got '1.5'"),
    (["--trainer.gradient_clip_val", "big"], "--trainer.gradient_clip_val: expected a number or null, got 'big'"),
    (["--trainer.deterministic", "maybe"], "--trainer.deterministic: expected true, false, warn or null, got 'maybe'"),
    (
        ["--trainer.enable_progress_bar", "perhaps"],
        "--trainer.enable_progress_bar: expected true, false or null, got 'perhaps'",
    ),
    (["--trainer.precision", "12"], f"--trainer.precision: expected {PRECISIONS} or null, got '12'"),
    (["--data.batch_size", "big"], "--data.batch_size: expected an int, got 'big'"),
    (["--data.init_args.num_workers", "two"], "--data.init_args.num_workers: expected an int or null, got 'two'"),
    (["--data.init_args.train_size", "ten"], "--data.init_args.train_size: expected a float or null, got 'ten'"),
    (["--seed_everything", "abc"], "--seed_everything: expected true, false or an int, got 'abc'"),
    (["--checkpoint_every_n_steps", "x"], "--checkpoint_every_n_steps: expected an int, got 'x'"),
    (
        ["--model.init_args.lr", "0.1"],
        "unknown key 'model.init_args.lr'; `vitlight fit --help` lists the valid keys (and --model.help CLASS a model's own)",
    ),
]


def parse_error_line(argv: list[str]) -> str:
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            fit_parser().parse_args(argv)
    except _ParseFailure as failure:
        return format_parse_error(str(failure), argv=argv)
    raise AssertionError(f"{argv} parsed")


@pytest.mark.parametrize(("extra", "line"), MISTAKES, ids=[" ".join(extra) for extra, _ in MISTAKES])
def test_mistake_prints_key_expected_and_given(extra: list[str], line: str):
    assert parse_error_line(["fit", "--config", QUICKSTART, *extra]) == line


def test_a_wrong_value_in_a_config_file_names_its_key_in_the_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    optimizer:\n      init_args:\n        lr: abc\n")
    line = parse_error_line(["fit", "--config", QUICKSTART, "--config", str(bad)])
    assert line == "model.init_args.optimizer.init_args.lr (in a --config file): expected a float, got 'abc'"


@pytest.mark.parametrize("row", [0, 10])
def test_the_command_prints_exactly_that_line(row: int, capsys):
    extra, line = MISTAKES[row]
    try:
        code = main(["fit", "--config", QUICKSTART, *extra])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert err.splitlines()[-1] == f"vitlight: error: {line}", err
    assert "Traceback" not in err
