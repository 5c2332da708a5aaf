"""The config reference, read from `research/config.py` and `research/configs/`.

Every `Config` field's type, default and meaning: the meaning is the comment on the
field's line in the dataclass (and the comment lines under it), grouped by the
`# --- Section ---` banners; the choices come from `config._CHOICES`, and whether a
field may change when a run resumes from `config.RESUMABLE_FIELDS`. Every named config
with its purpose (its module docstring's first line) and the fields it sets.
"""
import ast
import dataclasses
import io
import json
import re
import sys
import tokenize
import typing

from research import config as config_lib
from research.docs import tables

_SECTION = re.compile(r"^---\s*(.+?)\s*-*$")      # a comment's text, "#" stripped


def _comments(source):
    """{line number: (column, comment text without '#')} of every comment in `source`."""
    found = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            found[token.start[0]] = (token.start[1], token.string.lstrip("#").strip())
    return found


def field_docs(source=None):
    """[(section, field name, meaning)] in the order of the dataclass.

    A field's meaning is its line's comment plus the comment-only lines right under it
    that are indented past the field (continuations). Raises ValueError naming the field
    when it has no comment.
    """
    if source is None:
        with open(config_lib.__file__, encoding="utf-8") as f:
            source = f.read()
    comments = _comments(source)
    lines = source.splitlines()
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "Config")
    banners = [(n, _SECTION.match(text).group(1)) for n, (_, text) in sorted(comments.items())
               if n > cls.lineno and _SECTION.match(text)]

    def continues(number, field):  # a comment-only line indented past the field, not a banner
        return (number in comments and lines[number - 1].lstrip().startswith("#")
                and comments[number][0] > field.col_offset and not _SECTION.match(comments[number][1]))

    docs = []
    for node in cls.body:
        if not isinstance(node, ast.AnnAssign):
            continue
        section = next((title for n, title in reversed(banners) if n < node.lineno), "General")
        parts = [comments[n][1] for n in range(node.lineno, node.end_lineno + 1) if n in comments]
        number = node.end_lineno + 1
        while continues(number, node):
            parts.append(comments[number][1])
            number += 1
        if not parts:
            raise ValueError(f"research/config.py:{node.lineno}: field {node.target.id!r} has no comment "
                             "(the config reference takes each field's meaning from its comment)")
        docs.append((section, node.target.id, " ".join(parts)))
    return docs


def type_name(annotation):
    """`str`, `int or null`, `list`, `bool or str` ... as a config file writes the value."""
    names = {str: "str", int: "int", float: "float", bool: "bool", tuple: "list", type(None): "null"}
    if typing.get_origin(annotation) is typing.Union:
        return " or ".join(type_name(a) for a in typing.get_args(annotation))
    return names.get(annotation, getattr(annotation, "__name__", str(annotation)))


def json_value(value):
    """A value as JSON (a config file and `--set` take JSON)."""
    return json.dumps(list(value) if isinstance(value, tuple) else value)


def fields_table():
    """The Markdown reference of every Config field, one table per section."""
    types = typing.get_type_hints(config_lib.Config)
    defaults = config_lib.Config()
    sections = {}
    for section, name, meaning in field_docs():
        choices = config_lib._CHOICES.get(name)
        kind = " or ".join(f"`{json.dumps(c)}`" for c in choices) if choices else type_name(types[name])
        resumable = "yes" if name in config_lib.RESUMABLE_FIELDS else "no"
        sections.setdefault(section, []).append(
            [f"`{name}`", kind, f"`{json_value(getattr(defaults, name))}`", tables.escape(meaning), resumable])
    parts = [f"**{section}**\n\n" + tables.table(["field", "type or values", "default", "meaning",
                                                  "may change on resume"], rows)
             for section, rows in sections.items()]
    return "\n\n".join(parts)


def purpose(function):
    """A named config's purpose: the first line of its docstring, else of its module's."""
    doc = function.__doc__ or sys.modules[function.__module__].__doc__ or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def named_configs_table():
    """Every named config: its purpose and the fields it sets (those that differ from the defaults)."""
    from research.configs import NAMED_CONFIGS

    defaults = config_lib.Config().to_dict()
    rows = []
    for name, function in NAMED_CONFIGS.items():
        values = config_lib.check_config(function()).to_dict()
        changed = ", ".join(f"`{k}={json_value(v)}`" for k, v in values.items()
                            if v != defaults[k] and k != "name")
        rows.append([f"`{name}`", tables.escape(purpose(function)), changed or "(the defaults)"])
    return tables.table(["name", "what it is for", "fields it sets (the rest are the defaults)"], rows)


def field_names():
    """The Config fields' names, in declaration order."""
    return [f.name for f in dataclasses.fields(config_lib.Config)]
