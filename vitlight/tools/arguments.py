"""What the command lines of `vitlight sample/probe/attention/figures` share: `--data` overrides
for the checkpoint's data config, and the device flag (one-line flag errors: cli_errors.CommandParser)."""

from __future__ import annotations

import argparse

import torch

from vitlight.errors import ConfigError

PALETTE_CHOICES = ("check", "checkpoint")
DATA_EPILOG = "The data is the one in the checkpoint's run config; --data NAME and --data.KEY VALUE override it."


def split_data_overrides(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Own flags, and the `--data X --data.key value` overrides for the checkpoint's data config."""
    args, rest = parser.parse_known_args(argv)
    for token in rest:
        if token.startswith("-") and not (token == "--data" or token.startswith(("--data.", "--data="))):
            raise ConfigError(
                f"{parser.prog}: unknown flag {token!r}; valid: {', '.join(_flags(parser))}, --data, --data.<key>"
            )
    return args, rest


def add_palette_and_device(p: argparse.ArgumentParser) -> None:
    """The ImageGPT tools' --palette (what to do when the data's palette is not the checkpoint's) and --device."""
    p.add_argument(
        "--palette",
        default="check",
        choices=PALETTE_CHOICES,
        help=(
            "check: refuse data whose palette differs from the checkpoint's; checkpoint: quantize with the "
            "checkpoint's anyway"
        ),
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")


def _flags(parser: argparse.ArgumentParser) -> list[str]:
    return [option for action in parser._actions for option in action.option_strings if option.startswith("--")]


def device_of(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device {name!r} (--device) is not a device (use auto, cpu, cuda, cuda:1, ...)") from None
