"""Errors a user can make end in one line naming the bad key or value, exit code 2, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import EXPERIMENTS, run_vitlight
from vitlight.cli import main

QUICKSTART = str(EXPERIMENTS / "quickstart.yaml")


def call_main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().err


def assert_one_line_error(stderr: str, *fragments: str) -> None:
    lines = [line for line in stderr.splitlines() if line.startswith("vitlight: error:")]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_unknown_config_key(capsys):
    code, err = call_main(["fit", "--config", QUICKSTART, "--trainer.max_epoks", "3"], capsys)
    assert code == 2
    assert_one_line_error(err, "max_epoks")


def test_unknown_key_inside_a_yaml(tmp_path: Path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  init_args:\n    learning_rat: 0.1\n")
    code, err = call_main(["fit", "--config", QUICKSTART, "--config", str(bad)], capsys)
    assert code == 2
    assert_one_line_error(err, "learning_rat")


def test_wrong_type(capsys):
    code, err = call_main(["fit", "--config", QUICKSTART, "--trainer.max_epochs", "many"], capsys)
    assert code == 2
    assert_one_line_error(err, "max_epochs", "many")


def test_missing_config_file(capsys):
    code, err = call_main(["fit", "--config", "experiments/does_not_exist.yaml"], capsys)
    assert code == 2
    assert_one_line_error(err, "does_not_exist.yaml")


def test_malformed_yaml(tmp_path: Path, capsys):
    bad = tmp_path / "broken.yaml"
    bad.write_text("model:\n  init_args: [unclosed\n")
    code, err = call_main(["fit", "--config", str(bad)], capsys)
    assert code == 2
    assert_one_line_error(err, "broken.yaml")


def test_unknown_model_name_fails_when_the_model_is_built(capsys, tmp_path: Path):
    code, err = call_main(
        [
            "fit",
            "--config",
            QUICKSTART,
            "--model.init_args.model_name",
            "vit_tiny_patch16_2244",
            "--runs_dir",
            str(tmp_path / "runs"),
        ],
        capsys,
    )
    assert code == 2
    assert_one_line_error(err, "vit_tiny_patch16_2244", "vit_tiny_patch16_224")


def test_unknown_subcommand(capsys):
    code, err = call_main(["trian", "--config", QUICKSTART], capsys)
    assert code == 2
    assert_one_line_error(err, "trian", "fit")


def test_errors_from_the_installed_command_exit_2():
    result = run_vitlight("fit", "--config", QUICKSTART, "--trainer.max_epochs", "many")
    assert result.returncode == 2
    assert_one_line_error(result.stderr, "max_epochs")
