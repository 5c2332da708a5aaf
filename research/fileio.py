"""Atomic file writing: a reader, or a run killed at any moment, sees the old file or the new one.

Every file the project writes that a later step reads (CSV logs, configs, metrics,
exports, masks) goes through these helpers: write to a temporary file in the same
folder, flush and fsync it, then `os.replace` it over the target (atomic on POSIX).
"""
import contextlib
import json
import os
import re
import shutil
import tempfile

from research.faults import kill_point


def _umask():
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def _temporary_affixes(name):
    """(prefix, suffix) of the hidden temporary an atomic write of `name` goes through:
    `.STEM.<random>.tmp[.SUFFIX]`, keeping the suffix because some writers choose their
    format by it. `remove_interrupted_writes` recognises leftovers by the same affixes."""
    stem, dot, suffix = name.partition(".")
    return f".{stem}.", f".tmp{dot}{suffix}"


MOVED_ASIDE = ".old-"   # `atomic_directory` renames an old folder NAME to NAME.old-<random>


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path in `path`'s folder; on success it replaces `path`.

    Use for writers that want a file name (PIL `save`, `numpy.save`, Keras `save`).
    On an exception the temporary file is removed and `path` is left untouched.
    The temporary name keeps `path`'s suffix, because some writers choose their
    format by it.
    """
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    prefix, suffix = _temporary_affixes(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=folder)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give what open() would
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        kill_point("atomic_replace")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_bytes(path, data):
    """Writes `data` (bytes) to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path, text):
    """Writes `text` (str, UTF-8) to `path` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj):
    """Writes `obj` as indented JSON to `path` atomically (NaN written as null)."""
    atomic_write_text(path, json.dumps(_nan_to_none(obj), indent=2, sort_keys=True) + "\n")


def read_json(path):
    """The JSON value in file `path`.

    Raises FileNotFoundError when it is missing, and ValueError naming the file when it is
    not UTF-8 JSON (a half-written or hand-edited file).
    """
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def refuse_file_in_place_of_folder(path):
    """Raises FileExistsError when `path` exists and is not a folder: a folder written
    there (`atomic_directory`) would replace it."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise FileExistsError(f"{path} exists and is not a folder: refusing to replace it by one")


@contextlib.contextmanager
def atomic_directory(path):
    """Yields a temporary folder beside `path`; on success it takes `path`'s place.

    For writers that produce a folder (SavedModel). An existing `path` is moved
    aside first and removed only after the new folder is in place, so at every
    moment one complete version exists (a crash in between leaves `path.old-*`).
    Raises FileExistsError, before anything is written, when `path` is a file.
    """
    path = os.path.abspath(os.fspath(path))
    refuse_file_in_place_of_folder(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    prefix, suffix = _temporary_affixes(os.path.basename(path))
    tmp = tempfile.mkdtemp(prefix=prefix, suffix=suffix, dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give what mkdir() would
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=os.path.basename(path) + MOVED_ASIDE, dir=parent)
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old:
        shutil.rmtree(old, ignore_errors=True)


def _nan_to_none(obj):
    if isinstance(obj, float) and obj != obj:
        return None
    if isinstance(obj, dict):
        return {k: _nan_to_none(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_nan_to_none(v) for v in obj]
    return obj


def remove_interrupted_writes(folder, names):
    """Removes what a process killed in the middle of writing `names` in `folder` left.

    `atomic_path` and `atomic_directory` write `NAME` through a temporary
    `.STEM.<random>.tmp[.SUFFIX]` beside it, and `atomic_directory` moves an old folder
    aside as `NAME.old-<random>` for a moment. A SIGKILL at the wrong time leaves them
    behind. They are never read, but a SavedModel's can be hundreds of MB. Only the
    leftovers of the given names are touched (another process may be writing other
    files in `folder` right now). One case is kept: `NAME` missing while a
    `NAME.old-*` exists means a folder swap was interrupted between its two renames,
    and the old and the new folder are then the only complete copies.

    Must only be called while no other process writes these names (the one training
    process of a workdir, before it writes anything).

    Args:
      folder: the folder to clean (missing: nothing to do).
      names: file or folder names written there atomically, e.g. ["train_log.csv"].
    Returns:
      the paths removed, sorted.
    """
    if not os.path.isdir(folder):
        return []
    entries = sorted(os.listdir(folder))
    removed = []
    for name in names:
        prefix, suffix = _temporary_affixes(name)
        temporary = re.compile(rf"^{re.escape(prefix)}[^.]+{re.escape(suffix)}$")
        moved_aside = re.compile(rf"^{re.escape(name + MOVED_ASIDE)}[^.]+$")
        leftovers = [e for e in entries if temporary.match(e) or moved_aside.match(e)]
        if name not in entries and any(moved_aside.match(e) for e in leftovers):
            continue            # an interrupted swap: keep both copies
        for entry in leftovers:
            path = os.path.join(folder, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
            removed.append(path)
    return sorted(removed)
