"""Markdown helpers shared by the generated tables: cells, tables, provenance, absence, anchors."""
import re

from research import provenance as provenance_lib


def number(value, digits=2, suffix=""):
    """`value` with `digits` decimals and thousands separators; "-" for None."""
    if value is None:
        return "-"
    return f"{value:,.{digits}f}{suffix}"


def table(header, rows):
    """A Markdown table: `header` a list of column titles, `rows` lists of cell strings."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def with_provenance(block, body):
    """One table (or list) under its provenance line."""
    return provenance_lib.provenance_line(block) + "\n\n" + body


def missing(what, command, where):
    """The one line a block shows when its artifact has not been saved yet."""
    return f"No saved {what} yet: `{command}` saves one ({where})."


def join_sections(sections):
    """Sections (one per machine or artifact) separated by blank lines."""
    return "\n\n".join(sections)


def escape(text):
    """Prose for a Markdown page: `<`, `>` and `*` outside code spans shown as written
    (help texts say `<name>.png` and `x ** p`, which Markdown would take for HTML or emphasis)."""
    parts = text.split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;").replace("*", "\\*")
    return "`".join(parts)


def slug(heading):
    """The anchor GitHub gives a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
