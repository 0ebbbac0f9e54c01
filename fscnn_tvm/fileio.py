"""Files the project writes and reads back: atomically, and with one error naming what is wrong."""
from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def replacing(path: str | os.PathLike, mode: int = 0o644):
    """Yield a unique temp path in ``path``'s folder; when the block succeeds it replaces ``path``
    (``os.replace``), else it is removed. A reader never sees half a file and a kill never leaves
    one. ``mode``: mkstemp's 0600 would make a shared log unreadable to others."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp" + path.suffix)
    os.close(fd)
    try:
        os.chmod(tmp, mode)
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def atomic_write_text(path: str | os.PathLike, text: str) -> str:
    """Write ``text`` to ``path`` atomically (see :func:`replacing`), creating its folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp:
        Path(tmp).write_text(text)
    return str(path)


def atomic_write_json(path: str | os.PathLike, data) -> str:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json_file(path: str | os.PathLike, what: str, error: type[Exception], fmt: int | None = None) -> dict:
    """The JSON object in ``path``; ``error`` (naming the file and ``what`` it should be) when it is
    missing, corrupt, not an object, or not of format ``fmt``."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: no such {what} file")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise error(f"{path}: not a valid {what} (corrupt JSON: {err})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: not a {what} (expected a JSON object)")
    if fmt is not None and data.get("format") != fmt:
        raise error(f"{path}: not a {what} of format {fmt} (got format {data.get('format')!r})")
    return data
