"""Whether an argv parses with `vitlight fit`'s parser (LightningCLI's, built once, nothing instantiated
or run): the checks `vitlight sweep` and `vitlight pipeline` make before any trial or stage starts."""

from __future__ import annotations

import contextlib
import functools
import io
import re
from typing import Any

from vitlight.cli_errors import format_parse_error


class ParseFailure(Exception):
    pass


class _Captured(Exception):
    def __init__(self, parser: Any) -> None:
        super().__init__("parser captured")
        self.parser = parser


@functools.cache
def fit_parser() -> Any:
    """vitlight's LightningCLI parser (all subcommands), built without parsing or instantiating."""
    from vitlight.config_files import install_yaml_loader
    from vitlight.lightning_cli import VitlightArgumentParser, VitlightCLI  # imports Lightning, the data and the tasks

    install_yaml_loader()  # a key given twice in a config file is refused here as in `vitlight fit`

    class RaisingParser(VitlightArgumentParser):
        def error(self, message: str, ex: Exception | None = None) -> None:  # type: ignore[override]
            raise ParseFailure(str(message))

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
    text = format_parse_error(message, argv=[])
    return text if len(text) <= 160 else text[:157] + "..."


def fit_problem(argv: list[str]) -> str | None:
    """None when `vitlight <argv>` (argv starts with the subcommand) parses; else why not."""
    parser = fit_parser()
    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except ParseFailure as failure:
        return short_reason(str(failure))
    except SystemExit:  # --help and friends in a parameter value
        return "the parser exited"
    except Exception as error:  # a config file that cannot be read, ...
        return short_reason(str(error))
    return None
