"""Command-line errors in one line: jsonargparse's multi-line parse errors turned into one line that
names the key, the value and what is valid, and the argparse parser of vitlight's own subcommands."""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from collections.abc import Iterable
from typing import Any

from vitlight.errors import ConfigError, one_line

# The arguments of the current `vitlight` call (main() may be given them instead of sys.argv).
user_argv: list[str] | None = None
# The class names `--data NAME` and `--model NAME` accept (see register_choices).
CLASS_CHOICES: dict[str, list[str]] = {}


class CommandParser(argparse.ArgumentParser):
    """argparse for `vitlight sample/probe/report/sweep/...`: a bad flag raises ConfigError, which the
    command line prints as one line (`vitlight: error: vitlight probe: ...`) before exiting 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(f"{self.prog}: {message}")

    @classmethod
    def from_docstring(cls, prog: str, doc: str, epilog_extra: str = "") -> CommandParser:
        """The parser of a command module: its docstring's first paragraph as description, the rest
        (usage examples) as epilog, kept as written."""
        return cls(
            prog=prog,
            description=doc.split("\n\n")[0],
            allow_abbrev=False,
            formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog=doc.split("\n\n", 1)[1] + epilog_extra,
        )


# jsonargparse's type names -> what a user writes
_TYPE_WORDS = {
    "float": "a float",
    "int": "an int",
    "bool": "true or false",
    "str": "a string",
    "NoneType": "null",
    "tuple": "a list such as [x, y]",
    "list": "a list",
    "dict": "a mapping",
    "Path": "a path",
}
# types a key also accepts that a user never means (a tensor learning rate, a class given by path)
_UNHELPFUL = ("torch.Tensor", "Tensor")


def _literal_values(text: str) -> list[str]:
    import ast

    try:
        return [str(value) for value in ast.literal_eval(f"[{text}]")]
    except (SyntaxError, ValueError):
        return [text]


def _type_words(text: str) -> list[str]:
    """One jsonargparse type (`<class 'int'>`, `typing.Literal['a', 'b']`, ...) in a user's words."""
    text = text.strip()
    literal = re.fullmatch(r"(?:typing\.)?Literal\[(.*)\]", text)
    if literal:
        return _literal_values(literal.group(1))
    match = re.fullmatch(r"<class '([\w.]+)'>", text)
    name = (match.group(1) if match else text.replace("typing.", "")).rsplit(".", 1)[-1]
    if name in _UNHELPFUL:
        return []
    if name == "bool":
        return ["true", "false"]
    if name in _TYPE_WORDS:
        return [_TYPE_WORDS[name]]
    return [f"a {name} (class_path)" if match and name[:1].isupper() else name]


def _type_name(text: str) -> str:
    return " or ".join(_type_words(text)) or text.strip()


def _join(words: list[str]) -> str:
    """["an int", "a float", "null"] -> "a number or null";
    ["true", "false", "warn", "null"] -> "true, false, warn or null"."""
    if "an int" in words and "a float" in words:
        words = ["a number" if w in ("an int", "a float") else w for w in words]
    words = list(dict.fromkeys(w for w in words if w))
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def _split_types(text: str) -> list[str]:
    """`<class 'int'>, typing.Literal['a', 'b'], <class 'NoneType'>` -> its three types."""
    types, depth, start = [], 0, 0
    for index, char in enumerate(text):
        depth += char in "[(" and 1 or 0
        depth -= char in "])" and 1 or 0
        if char == "," and depth == 0:
            types.append(text[start:index])
            start = index + 1
    return [t.strip() for t in [*types, text[start:]] if t.strip()]


def _find_path(tree: object, leaf: str, prefix: str = "") -> str | None:
    """The dotted path of key `leaf` inside nested dicts (where a config file put the bad value)."""
    if not isinstance(tree, dict):
        return None
    for key, value in tree.items():
        path = f"{prefix}.{key}" if prefix else str(key)
        if key == leaf:
            return path
        found = _find_path(value, leaf, path)
        if found:
            return found
    return None


def _flag_in_argv(argv: list[str], outer: str, leaf: str, given: str | None) -> tuple[str, str] | None:
    """The `--outer....leaf VALUE` (or `=VALUE`) the user typed, as (flag, value); the last one that gave `given`."""
    found = []
    for index, token in enumerate(argv):
        flag, equals, value = token.partition("=")
        name = flag[2:] if flag.startswith("--") else ""
        inside = name.startswith(outer + ".") or outer == leaf  # jsonargparse may report only the leaf's parser
        if name and (name == leaf or (inside and name.endswith("." + leaf))):
            if not equals:
                value = argv[index + 1] if index + 1 < len(argv) else ""
            found.append((flag, value))
    matching = [item for item in found if item[1] == given]
    return (matching or found or [None])[-1]


def _wrong_type(message: str, argv: list[str]) -> str | None:
    """`--KEY: expected WHAT, got 'VALUE'` for a value the parser rejected, or None if not that kind of error."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    if not keys:
        return None
    outer, leaf = keys[0], keys[-1]
    inner = message[message.rfind(f'Parser key "{leaf}"') :]
    if "is not accepted" in inner or "is not expected" in inner:
        return None
    subtypes = re.search(r"Subtypes: \[(.*)\]", inner)
    single = re.search(r"Expected a (.+?)\. Got value: (.*)", inner)
    if subtypes:
        words = [w for t in _split_types(subtypes.group(1)) for w in _type_words(t)]
    elif single:
        words = _type_words(single.group(1))
    else:
        return None
    given = re.search(r"Given value: (.*)", inner)
    value = given.group(1).strip() if given else single.group(2).strip() if single else "?"
    typed = _flag_in_argv(argv, outer, leaf, value)
    if typed:
        where, value = typed
    elif outer == leaf:
        where = _key_in_config_files(argv, leaf, value) or f"--{outer}"
    else:  # the value came from a config file: show where in it
        import ast

        outer_given = re.findall(r"Given value: (.*)", message)
        try:
            tree = ast.literal_eval(outer_given[-1].strip()) if outer_given else None
        except (SyntaxError, ValueError):
            tree = None
        where = f"{outer}.{_find_path(tree, leaf) or leaf} (in a --config file)"
    return f"{where}: expected {_join(words)}, got {value!r}"


def _key_in_config_files(argv: list[str], leaf: str, value: str) -> str | None:
    """`full.key.leaf (in FILE)` for the --config file that gave `leaf` the rejected `value`, or None."""
    import yaml

    for flag, name in zip(argv, argv[1:]):
        if flag not in ("--config", "-c"):
            continue
        try:
            tree = yaml.safe_load(open(name).read())
        except (OSError, yaml.YAMLError):
            continue
        path = _find_path(tree, leaf)
        found: Any = tree
        for part in (path or "").split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if path and str(found) == value:
            return f"{path} (in {name})"
    return None


def _uncallable_class(message: str, argv: list[str]) -> str | None:
    """A class_path that does not import (an unknown scheduler or optimizer), with the full key and the reason."""
    bad = re.search(
        r"expects a function or a callable class: (.*?)\. Got value: Namespace\(class_path='([^']+)'", message
    )
    if not bad:
        return None
    keys = re.findall(r'Parser key "([^"]+)"', message[: bad.start()])
    key = ".init_args.".join(keys) if keys else "the class_path"
    typed = [a.split("=")[0][2:] for a in argv if a.startswith("--") and a.split("=")[0].endswith("." + key)]
    key = typed[-1] if typed else key
    return (
        f"{key}: class_path {bad.group(2)!r} cannot be used ({bad.group(1)}); give an importable class, e.g. "
        "torch.optim.AdamW or vitlight.tasks.schedules.WarmupCosine"
    )


def _required(names: str, argv: list[str]) -> str:
    """Missing `model`/`data`: for a checkpoint's test, where its run's whole config is."""
    missing = ", ".join(name.split(".", 1)[-1] for name in names.split(", "))
    command = argv[0] if argv and not argv[0].startswith("-") else "fit"
    checkpoints = [value for flag, value in zip(argv, argv[1:]) if flag == "--ckpt_path"]
    if not checkpoints or checkpoints[-1] in ("last", "best"):
        return (
            f"missing {missing}: give the experiment's YAML with --config (e.g. --config experiments/quickstart.yaml)"
        )
    from pathlib import Path

    beside = Path(checkpoints[-1]).expanduser().resolve().parent.parent / "config.yaml"
    where = f"its run folder has it: --config {beside}" if beside.is_file() else "its run folder's config.yaml holds it"
    return (
        f"missing {missing}: `vitlight {command}` takes the model and data from a config, not from the checkpoint; "
        f"{where}"
    )


def register_choices(key: str, classes: Iterable[Any], base: type) -> None:
    """Records the subclasses of `base` among `classes` as the class names `--key NAME` accepts.

    `vitlight.data` and `vitlight.tasks` call this when imported, so that an unknown `--data` or
    `--model` lists the valid names without this module importing either package.
    """
    names = {c.__name__ for c in classes if isinstance(c, type) and issubclass(c, base) and c is not base}
    CLASS_CHOICES[key] = sorted(set(CLASS_CHOICES.get(key, [])) | names)


def format_parse_error(message: str, option_strings: Iterable[str] = (), argv: list[str] | None = None) -> str:
    argv = list(argv if argv is not None else user_argv if user_argv is not None else sys.argv[1:])
    key_match = re.search(r'Parser key "([^"]+)"', message)
    value_match = re.search(r"Given value: (.*)", message)
    key = key_match.group(1) if key_match else None
    value = value_match.group(1).strip() if value_match else None
    if key in ("data", "model") and "Expected a dot import path string" in message and message.count("Parser key") == 1:
        valid = CLASS_CHOICES.get(key, [])
        return f"{key} {value!r} is not a known class; valid: {', '.join(valid) or 'a class_path'}"
    wrong = _uncallable_class(message, argv) or _wrong_type(message, argv)
    if wrong:
        return wrong
    required = re.match(r"the following arguments are required: (.+)", message)
    if required:
        return _required(required.group(1), argv)
    unknown = re.search(r"Option '([\w.]+)' is not accepted", message)
    if unknown:
        name = unknown.group(1)
        outer = key or name
        flags = [arg.split("=")[0] for arg in argv if arg.startswith("--") and arg.split("=")[0].endswith("." + name)]
        where = flags[-1].lstrip("-") if flags else name if outer == name else f"{outer}.{name}"
        return (
            f"unknown key {where!r}; `vitlight fit --help` lists the valid keys (and --model.help CLASS a model's own)"
        )
    unrecognized = re.match(r"unrecognized arguments: (\S+)", message)
    if unrecognized:
        bad = unrecognized.group(1).split("=")[0]
        close = difflib.get_close_matches(bad, list(option_strings), n=3, cutoff=0.75)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; `vitlight fit --help` lists the valid keys"
        return f"unknown option {bad}{hint}"
    return one_line(message)
