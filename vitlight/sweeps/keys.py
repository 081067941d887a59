"""Checks a sweep's parameter names with the vitlight command's own parser, before any trial starts.

Each check parses the very argv a trial would get (the command's macros expanded with example
values) with the parser of `vitlight fit` (LightningCLI's, built once, nothing instantiated)
or with `vitlight pipeline`'s own check. When the whole command fails, parameters are added
one at a time in `${args}` order, so that each bad name (or value) is found and listed.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from vitlight.sweeps.macros import expand, vitlight_arguments
from vitlight.sweeps.spec import Parameter, SweepSpec, SweepSpecError


class _ParseFailure(Exception):
    pass


class _Captured(Exception):
    def __init__(self, parser: Any) -> None:
        super().__init__("parser captured")
        self.parser = parser


@functools.cache
def fit_parser() -> Any:
    """vitlight's LightningCLI parser (all subcommands), built without parsing or instantiating."""
    from vitlight.cli import VitlightArgumentParser, VitlightCLI

    class RaisingParser(VitlightArgumentParser):
        def error(self, message: str, ex: Exception | None = None) -> None:  # type: ignore[override]
            raise _ParseFailure(str(message))

    class ParseOnly(VitlightCLI):
        def init_parser(self, **kwargs: Any) -> Any:
            self.parser_class = RaisingParser
            return super().init_parser(**kwargs)

        def parse_arguments(self, parser: Any, args: Any) -> None:
            raise _Captured(parser)

    try:
        ParseOnly(args=[])
    except _Captured as captured:
        return captured.parser
    raise RuntimeError("LightningCLI did not reach parse_arguments")


def short_reason(message: str) -> str:
    """A parser message cut to the informative part."""
    unknown = re.search(r"Option '([\w.]+)' is not accepted|unrecognized arguments: (\S+)", message)
    if unknown:
        return "unknown key"
    from vitlight.cli_errors import format_parse_error

    text = format_parse_error(message, argv=[])
    return text if len(text) <= 160 else text[:157] + "..."


def fit_problem(argv: list[str]) -> str | None:
    """None when `vitlight <argv>` (argv starts with the subcommand) parses; else why not."""
    parser = fit_parser()
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except _ParseFailure as failure:
        return short_reason(str(failure))
    except SystemExit:  # --help and friends in a parameter value
        return "the parser exited"
    except Exception as error:  # a config file that cannot be read, ...
        return short_reason(str(error))
    return None


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
