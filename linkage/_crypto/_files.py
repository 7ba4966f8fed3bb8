"""Atomic, private file writes.

A file is written to a temporary file in the same directory (created with
mode 0600 by ``mkstemp``), flushed and fsync'ed, then moved into place: with
``os.link`` when the output must not exist (which fails if it appeared in the
meantime, so an existing file is never clobbered), or ``os.replace`` under
``force``.  On any failure the temporary file is removed, so no partial output
is ever left behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ..errors import OutputExistsError


def _exists_error(path: Path) -> OutputExistsError:
    return OutputExistsError(f"{path} already exists (use --force to replace it)")


def check_output(path: str | Path, force: bool) -> Path:
    """Refuse an existing output early, before any expensive work."""
    p = Path(path)
    if not force and (p.exists() or p.is_symlink()):
        raise _exists_error(p)
    return p


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platform without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_output(path: str | Path, *, force: bool = False, mode: int = 0o600) -> Iterator[BinaryIO]:
    """``with atomic_output(p) as f: f.write(...)`` -- all or nothing."""
    target = check_output(path, force)
    directory = target.parent if str(target.parent) else Path(".")
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    tmp = Path(tmp_name)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)
            except FileExistsError:
                raise _exists_error(target) from None
            except OSError:  # pragma: no cover - filesystem without hard links
                if target.exists():
                    raise _exists_error(target) from None
                os.replace(tmp, target)
            else:
                tmp.unlink()
        _fsync_dir(directory)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_atomic(path: str | Path, data: bytes, *, force: bool = False, mode: int = 0o600) -> Path:
    """Write ``data`` to ``path`` atomically with ``mode``."""
    with atomic_output(path, force=force, mode=mode) as f:
        f.write(data)
    return Path(path)
