"""Atomic file writes: a temp file in the target's directory, fsync, rename.

A crash (even ``kill -9``) or a full disk leaves either the old file or the
new one, never a truncated one. Every file kprune writes goes through here.

Example:
    >>> atomic_write_text("result.json", json.dumps(record))
    >>> with atomic_path("plot.png") as tmp:
    ...     figure.savefig(tmp)
    >>> atomic_save_model(model, "pruned.keras")
"""

import contextlib
import os
import tempfile


def _fsync_dir(d):
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path beside `path`; on success it is fsynced and
    renamed over `path`, on any exception it is removed and `path` is left
    as it was."""
    path = os.path.abspath(os.fspath(path))
    d = os.path.dirname(path)
    base = os.path.basename(path)
    # Keep the extension: some writers (model.save, savefig) choose the format by it.
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix="_" + base, dir=d)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(d)


def atomic_write_bytes(path, data: bytes):
    """Write `data` to `path` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path, text: str):
    """Write `text` to `path` atomically (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_save_model(model, path):
    """``model.save(path)`` atomically; `path` must end with ``.keras``."""
    if not os.fspath(path).endswith(".keras"):
        raise ValueError(f"model file name must end with .keras, got '{path}'")
    with atomic_path(path) as tmp:
        model.save(tmp)
    return os.path.abspath(os.fspath(path))


def json_default(o):
    """``json.dumps(..., default=json_default)``: numpy scalars and arrays as
    Python numbers and lists, enums as their values, anything else as its repr."""
    import enum

    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, enum.Enum):
        return o.value
    return repr(o)
