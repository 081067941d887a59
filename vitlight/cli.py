"""The `vitlight` command: Lightning's fit/validate/test/predict (vitlight.lightning_cli) and vitlight's
own subcommands (vitlight.commands), each imported only when used."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from vitlight.console import quiet_console
from vitlight.errors import exit_with_one_line

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


def _extra_commands() -> dict[str, Callable[[list[str]], int]]:
    """vitlight's own subcommands; each takes its argv and returns an exit code."""
    from vitlight.commands import EXTRA_COMMANDS

    return EXTRA_COMMANDS


def main(argv: list[str] | None = None) -> int:
    explicit = argv is not None
    argv = list(sys.argv[1:] if argv is None else argv)
    # force: a fresh handler on the current stderr each call (tests run main() many times)
    logging.basicConfig(level=logging.INFO, format="%(message)s", force=True)
    quiet_console()
    extra = _extra_commands()
    command = argv[0] if argv else None
    if command is None or command in ("-h", "--help"):
        from vitlight.cli_help import top_level_help

        sys.stdout.write(top_level_help())
        return 0 if command else 2
    if command and not command.startswith("-") and command not in LIGHTNING_COMMANDS and command not in extra:
        valid = ", ".join(list(LIGHTNING_COMMANDS) + sorted(extra))
        sys.stderr.write(f"vitlight: error: unknown subcommand {command!r}; valid subcommands: {valid}\n")
        return 2
    if command in extra:
        try:
            return extra[command](argv[1:])
        except Exception as error:
            return exit_with_one_line(error)
    from vitlight.lightning_cli import run_lightning

    return run_lightning(argv if explicit else None)


if __name__ == "__main__":
    sys.exit(main())
