"""Finding and filling the generated blocks of a Markdown page."""
import re

BEGIN = "<!-- begin generated: {} -->"
END = "<!-- end generated: {} -->"
_MARKER = re.compile(r"^<!-- (begin|end) generated: ([A-Za-z0-9_.-]+) -->$")


def block_names(text, source="page"):
    """The names of the generated blocks in `text`, in order.

    Raises ValueError naming `source` and the line when a marker is unpaired, nested or
    repeated.
    """
    names, open_name, open_line = [], None, 0
    for number, line in enumerate(text.splitlines(), start=1):
        match = _MARKER.match(line.strip())
        if not match:
            continue
        kind, name = match.groups()
        if kind == "begin":
            if open_name is not None:
                raise ValueError(f"{source}:{number}: block {name!r} begins inside block {open_name!r} "
                                 f"(opened at line {open_line})")
            if name in names:
                raise ValueError(f"{source}:{number}: block {name!r} appears twice")
            open_name, open_line = name, number
        else:
            if name != open_name:
                raise ValueError(f"{source}:{number}: 'end generated: {name}' without its begin marker")
            names.append(name)
            open_name = None
    if open_name is not None:
        raise ValueError(f"{source}:{open_line}: block {open_name!r} has no end marker")
    return names


def fill(text, render, source="page"):
    """`text` with every generated block's content replaced by `render(name)` (a str).

    The markers stay; the content sits between them with one blank line on each side,
    so a table renders as Markdown.
    """
    names = block_names(text, source)
    for name in names:
        pattern = re.compile(re.escape(BEGIN.format(name)) + r".*?" + re.escape(END.format(name)), re.S)
        content = render(name).strip("\n")
        replacement = f"{BEGIN.format(name)}\n\n{content}\n\n{END.format(name)}"
        text = pattern.sub(lambda _: replacement, text, count=1)
    return text
