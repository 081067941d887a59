"""Checks a sweep's parameter names with the vitlight command's own parser, before any trial starts.

Each check parses the very argv a trial would get (the command's macros expanded with example
values) with the parser of `vitlight fit` (vitlight.parse_check) or with `vitlight pipeline`'s own
check. When the whole command fails, parameters are added one at a time in `${args}` order, so that
each bad name (or value) is found and listed.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from vitlight.parse_check import fit_problem
from vitlight.sweeps.macros import expand, vitlight_arguments
from vitlight.sweeps.spec import Parameter, SweepSpec, SweepSpecError


def command_problem(argv: list[str]) -> str | None:
    """Dispatches on the vitlight subcommand (argv[0])."""
    if argv[0] == "pipeline":
        from vitlight.tools.pipeline import argument_problem

        return argument_problem(argv[1:])
    return fit_problem(argv)


def check_keys(spec: SweepSpec) -> None:
    """Raises SweepSpecError listing every parameter (or value) that the command rejects."""
    with tempfile.TemporaryDirectory() as scratch:
        json_file = Path(scratch) / "args.json"

        def problem(values: dict[tuple[str, ...], Any]) -> str | None:
            argv = expand(spec, values, interpreter=sys.executable, json_file=json_file)
            return command_problem(vitlight_arguments(spec, argv))

        examples = {p.path: p.examples() for p in spec.parameters}
        longest = max((len(v) for v in examples.values()), default=1)
        failed = None
        for index in range(longest):  # every categorical value appears at least once
            failed = problem({path: values[index % len(values)] for path, values in examples.items()})
            if failed:
                break
        if failed is None:
            return
        alone = problem({})
        if alone:
            raise SweepSpecError(
                f"{spec.path}: the command without parameters is rejected: {alone}; command: {' '.join(spec.command)}"
            )
        bad = _bad_parameters(spec.parameters, examples, problem)
        if not bad:
            raise SweepSpecError(f"{spec.path}: the parameters are accepted one by one but not together: {failed}")
        names = ", ".join(name for name, _ in bad)
        details = "; ".join(f"{name}: {reason}" for name, reason in bad)
        raise SweepSpecError(
            f"{spec.path}: parameters that `vitlight {spec.subcommand}` does not accept: {names} ({details})"
        )


def _bad_parameters(parameters: tuple[Parameter, ...], examples: dict, problem) -> list[tuple[str, str]]:
    """Adds parameters one by one in ${args} order (sorted names); a parameter whose addition fails is bad."""
    good: dict[tuple[str, ...], Any] = {}
    bad = []
    for parameter in sorted(parameters, key=lambda p: p.path):
        for value in examples[parameter.path]:
            reason = problem({**good, parameter.path: value})
            if reason:
                shown = reason if reason == "unknown key" else f"value {value!r}: {reason}"
                bad.append((parameter.name, shown))
                break
        else:
            good[parameter.path] = examples[parameter.path][0]
    return bad
