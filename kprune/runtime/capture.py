"""Capture what C/C++ code writes to the process's stdout/stderr.

TFLite, TFLite-Micro and the converter print through the C runtime straight to
file descriptors 1 and 2, which `contextlib.redirect_stdout` cannot see. This
module swaps the descriptors for a temporary file for the duration of a block.

Set the environment variable KPRUNE_NO_CAPTURE=1 to let the output through
(e.g. to see the message of a native crash).

Example:
    >>> with capture_fds() as cap:
    ...     interpreter.print_allocations()
    >>> "Arena allocation total" in cap.text
    True
"""

import contextlib
import ctypes
import io
import os
import sys
import tempfile


def _flush_c_stdio():
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # pragma: no cover - non-glibc platforms
        pass


class Captured:
    """The text captured by `capture_fds` (filled in when the block ends)."""

    def __init__(self):
        self.text = ""


@contextlib.contextmanager
def capture_fds(fds=(1, 2), python_streams=True):
    """Redirects the given OS-level file descriptors (and, by default, Python's
    sys.stdout/sys.stderr) into one temporary file; yields a `Captured` whose
    `.text` holds everything written once the block exits (also on error)."""
    captured = Captured()
    if os.environ.get("KPRUNE_NO_CAPTURE"):  # debugging: let everything through
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        _flush_c_stdio()
        saved = {}
        try:
            for fd in fds:
                saved[fd] = os.dup(fd)
                os.dup2(tmp.fileno(), fd)
        except OSError:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            raise
        py_buf = io.StringIO()
        redirects = contextlib.ExitStack()
        if python_streams:
            redirects.enter_context(contextlib.redirect_stdout(py_buf))
            redirects.enter_context(contextlib.redirect_stderr(py_buf))
        try:
            with redirects:
                yield captured
        finally:
            _flush_c_stdio()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            tmp.seek(0)
            captured.text = (tmp.read().decode("utf-8", errors="replace")
                             + py_buf.getvalue())
