"""`vitlight --help` describes vitlight and lists every subcommand; `vitlight COMMAND --help` works for each."""

from __future__ import annotations

from pathlib import Path

import pytest

from vitlight import commands
from vitlight.cli import main
from vitlight.cli_help import subcommand_summaries


def call_main(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().out


def command_lines(text: str) -> dict[str, str]:
    """{name: description} from the `commands:` block of the help."""
    block = text.split("commands:\n", 1)[1].split("\n\n", 1)[0]
    return {line.split()[0]: line.split(None, 1)[1] for line in block.splitlines()}


def test_help_describes_vitlight_and_lists_every_subcommand(capsys):
    code, out = call_main(["--help"], capsys)
    assert code == 0
    assert "Lightning Trainer command line tool" not in out
    assert out.splitlines()[2].startswith("vitlight trains, compares and explains Vision Transformers")
    listed = command_lines(out)
    expected = {"fit", "validate", "test", "predict", *commands.EXTRA_COMMANDS}
    assert set(listed) == expected
    assert {"attention", "sample", "probe", "sweep", "report", "pipeline"} <= set(listed)
    assert listed["sweep"] == "run a W&B sweep file, on the W&B server or offline on Optuna"
    assert all(description.strip() for description in listed.values())


def test_no_arguments_show_the_help_and_exit_2(capsys):
    code, out = call_main([], capsys)
    assert code == 2
    assert "commands:" in out


def test_a_newly_registered_subcommand_is_listed(tmp_path: Path, monkeypatch, capsys):
    (tmp_path / "vitlight_extra_figures.py").write_text(
        '"""`vitlight figures RUNS`: draw the paper figures from run folders.\n\nMore text.\n"""\n'
        "def main(argv):\n    return 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    target = "vitlight_extra_figures:main"
    monkeypatch.setitem(commands.COMMAND_TARGETS, "figures", target)
    monkeypatch.setitem(commands.EXTRA_COMMANDS, "figures", commands._loader(target))
    code, out = call_main(["--help"], capsys)
    assert code == 0
    assert command_lines(out)["figures"] == "draw the paper figures from run folders"


@pytest.mark.parametrize("command", sorted(subcommand_summaries()))
def test_every_subcommand_has_its_own_help(command: str, capsys):
    code, out = call_main([command, "--help"], capsys)
    assert code == 0, out
    assert command in out and "--" in out  # names the command and lists its options
