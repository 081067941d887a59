"""The trial command line: a sweep's `command` with its macros expanded the way `wandb agent` does.

`${args}` is `--name=value` per top-level parameter, sorted by name, the value written by
Python's str() (W&B's agent formats `f"{param}={value}"`); a nested parameter block
comes as one flag holding a dict (`--model={'optimizer': {'lr': 0.001}}`), which vitlight's
parser merges into the config. `${interpreter}` is the Python running this process (the W&B
agent runs `python` from PATH); `${env}` is /usr/bin/env; `${program}` is the file's program.
"""

from __future__ import annotations

import json
import os
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
    """The agent's argument macros for one run config."""
    forms: dict[str, list[str]] = {
        key: []
        for key in (
            "args",
            "args_no_hyphens",
            "args_no_boolean_flags",
            "args_no_equals",
            "args_append_hydra",
            "args_override_hydra",
        )
    }
    for name, value in config.items():
        flag = f"{name}={value}"
        forms["args"].append("--" + flag)
        forms["args_no_hyphens"].append(flag)
        forms["args_no_equals"] += [f"--{name}", str(value)]
        forms["args_append_hydra"].append("+" + flag)
        forms["args_override_hydra"].append("++" + flag)
        if isinstance(value, bool):
            if value:
                forms["args_no_boolean_flags"].append("--" + name)
        else:
            forms["args_no_boolean_flags"].append("--" + flag)
    forms["args_json"] = [json.dumps(config)]
    return forms


def expand(
    spec: SweepSpec,
    values: dict[tuple[str, ...], Any],
    interpreter: str,
    json_file: Path | None = None,
    environ: dict[str, str] | None = None,
) -> list[str]:
    """The argv of one trial."""
    environ = os.environ if environ is None else environ
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
    for token in spec.command:
        match = MACRO.match(token)
        if match is None:
            argv.append(token)
        elif match.group(1) == "envvar":
            argv.append(environ.get(match.group(2) or "", ""))
        else:
            argv += macros.get(match.group(1), [])
    return argv


def vitlight_arguments(spec: SweepSpec, argv: list[str]) -> list[str]:
    """The part of a trial's argv that vitlight's own parser sees: from the subcommand on."""
    return argv[argv.index(spec.subcommand) :]
