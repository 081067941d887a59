"""The trial command line: a sweep's `command` with its macros expanded the way `wandb agent` does.

`${args}` is `--name=value` per top-level parameter, sorted by name, the value written by
Python's str() (W&B's agent formats `f"{param}={value}"`); a nested parameter block
comes as one flag holding a dict (`--model={'optimizer': {'lr': 0.001}}`), which vitlight's
parser merges into the config. `${interpreter}` is the Python running this process (the W&B
agent runs `python` from PATH); `${env}` is /usr/bin/env; `${program}` is the file's program.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

from vitlight.sweeps.spec import MACRO, SweepSpec


def nest(values: dict[tuple[str, ...], Any]) -> dict[str, Any]:
    """{path: value} -> the agent's config: nested dicts, top-level names sorted."""
    config: dict[str, Any] = {}
    for path in sorted(values):
        node = config
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = values[path]
    return {name: config[name] for name in sorted(config)}


def argument_forms(config: dict[str, Any]) -> dict[str, list[str]]:
    """The agent's argument macros for one run config, made by W&B's own builder."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    forms = create_sweep_command_args({"args": {name: {"value": value} for name, value in config.items()}})
    return {name: value for name, value in forms.items() if isinstance(value, list)}


def expand(
    spec: SweepSpec, values: dict[tuple[str, ...], Any], interpreter: str, json_file: Path | None = None
) -> list[str]:
    """The argv of one trial: W&B's own `create_sweep_command` expands `${envvar:NAME}` anywhere in a token (a
    variable that is not set stays as its name, as under `wandb agent`), then each whole-token macro."""
    from wandb.sdk.launch.sweeps.utils import create_sweep_command

    config = nest(values)
    macros = argument_forms(config)
    macros["interpreter"] = [interpreter]
    macros["program"] = [str(spec.program)] if spec.program else []
    macros["env"] = ["/usr/bin/env"] if platform.system() != "Windows" else []
    if "${args_json_file}" in spec.command:
        if json_file is None:
            raise ValueError("${args_json_file} needs a file to write")
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(macros["args_json"][0])
        macros["args_json_file"] = [str(json_file)]
    argv: list[str] = []
    for token in create_sweep_command([str(token) for token in spec.command]):
        match = MACRO.match(token)
        argv += [token] if match is None else macros.get(match.group(1), [])
    return argv


def vitlight_arguments(spec: SweepSpec, argv: list[str]) -> list[str]:
    """The part of a trial's argv that vitlight's own parser sees: from the subcommand on."""
    return argv[argv.index(spec.subcommand) :]
