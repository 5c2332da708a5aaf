"""The command-line reference, read from the argument parsers themselves.

The commands are found, not listed: every module under research/ that runs as
`python -m` (it has `if __name__ == "__main__":`, or is a package's `__main__.py`) and
every `scripts/*.py`. Each has a `main(argv=None)` that builds an argparse parser first;
`capture_parser` calls it with `parse_args` replaced by a trap that hands the parser back
before anything runs, so a new command or flag appears in the reference by itself.
"""
import argparse
import contextlib
import glob
import importlib
import importlib.util
import inspect
import json
import os
import re
import sys

from research.docs import tables

MAIN_GUARD = re.compile(r'^if __name__ == "__main__":', re.M)


class _Captured(Exception):
    def __init__(self, parser):
        super().__init__("parser captured")
        self.parser = parser


@contextlib.contextmanager
def _trapped_parsing():
    """While active, ArgumentParser.parse_args / parse_known_args raise `_Captured`."""
    saved = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args

    def trap(self, *args, **kwargs):
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = argparse.ArgumentParser.parse_known_args = trap
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args = saved


def capture_parser(main, source):
    """The parser `main` builds (called with argv=[] when it takes an argument).

    Raises ValueError naming `source` when `main` returns or fails without parsing.
    """
    takes_argv = bool(inspect.signature(main).parameters)
    with _trapped_parsing():
        try:
            main([]) if takes_argv else main()
        except _Captured as captured:
            return captured.parser
        except Exception as e:
            raise ValueError(f"{source}: main() failed before parsing its arguments "
                             f"({type(e).__name__}: {e})") from None
    raise ValueError(f"{source}: main() did not parse arguments with argparse")


def module_commands(root):
    """[(command, module name)] of the research modules that run as `python -m`."""
    found = []
    for path in sorted(glob.glob(os.path.join(root, "research", "**", "*.py"), recursive=True)):
        with open(path, encoding="utf-8") as f:
            if not MAIN_GUARD.search(f.read()):
                continue
        parts = os.path.relpath(path, root)[:-3].split(os.sep)
        if parts[-1] == "__main__":
            parts = parts[:-1]
        found.append(("python -m " + ".".join(parts), ".".join(parts)))
    return found


def script_commands(root):
    """[(command, path)] of scripts/*.py."""
    return [(f"python scripts/{os.path.basename(p)}", p)
            for p in sorted(glob.glob(os.path.join(root, "scripts", "*.py")))]


def _load_script(path):
    """Imports a script as a module (named `_cli_<stem>`), without running its `__main__`."""
    name = "_cli_" + os.path.basename(path)[:-3]
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parsers(root):
    """[(command, parser)] of every command, modules first, each by name."""
    found = []
    saved_path = list(sys.path)
    try:
        for command, name in module_commands(root):
            module = importlib.import_module(name + ".__main__" if command.endswith(".models") else name)
            found.append((command, capture_parser(module.main, name)))
        for command, path in script_commands(root):
            found.append((command, capture_parser(_load_script(path).main, os.path.relpath(path, root))))
    finally:
        sys.path[:] = saved_path
    for command, parser in found:
        parser.prog = command   # scripts' parsers name themselves after sys.argv[0]
    return found


def options(parser):
    """The parser's actions other than --help and internal ones (help=SUPPRESS)."""
    return [a for a in parser._actions
            if not isinstance(a, argparse._HelpAction) and a.help != argparse.SUPPRESS]


def invocation(parser, action):
    """How an action is written: `--out OUT`, `-n, --num N`, or a positional's metavar."""
    return parser._get_formatter()._format_action_invocation(action)


def usage(parser):
    """One usage line: required options, then optional ones in brackets, then positionals."""
    parts = []
    for action in options(parser):
        text = invocation(parser, action).split(", ")[-1]
        if action.option_strings and not action.required:
            text = f"[{text}]"
        parts.append(text)
    return " ".join([parser.prog, *parts])


def _default(action):
    if action.default in (None, argparse.SUPPRESS) or isinstance(action, (
            argparse._StoreTrueAction, argparse._StoreFalseAction)) or action.required:
        return "-"
    return f"`{json.dumps(action.default) if not isinstance(action.default, str) else action.default}`"


def _help(parser, action):
    text = action.help or ""
    try:
        text = text % {**vars(action), "prog": parser.prog}
    except (KeyError, TypeError, ValueError):
        pass
    if action.choices and action.metavar is not None:   # else the invocation shows them
        text += " (one of: " + ", ".join(str(c) for c in action.choices) + ")"
    text = tables.escape(" ".join(text.split()))
    return "**required**; " + text if action.required and action.option_strings else text


def summary(parser):
    """The first sentence of the parser's description, for the list of commands."""
    return tables.escape(" ".join((parser.description or "").split()).split(". ")[0].rstrip("."))


def command_section(command, parser):
    """The reference of one command: heading, description, usage, one row per option."""
    description = tables.escape(" ".join((parser.description or "").split()))
    rows = [[f"`{invocation(parser, a)}`", _default(a), _help(parser, a)] for a in options(parser)]
    body = [f"### `{command}`", "", description, "", "```", usage(parser), "```"]
    if rows:
        body += ["", tables.table(["option", "default", "meaning"], rows)]
    return "\n".join(line for line in body)


def reference(root):
    """A list of every command with its description's first sentence, then each command's section."""
    found = parsers(root)
    listing = [f"- [`{c}`](#{tables.slug(c)}): {summary(p)}." for c, p in found]
    return "\n".join(listing) + "\n\n" + "\n\n".join(command_section(c, p) for c, p in found)
