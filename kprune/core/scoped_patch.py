"""Temporary replacements of library functions that act in one thread only.

Tracing a composite layer replaces a few Keras / keras-hub functions for a
while (`shape_ops.traced_shapes`, the non-tensor call recording in
`composite`). A `ThreadScopedPatch` installs its replacements while any
thread is inside `active()` (reference-counted, so nested and concurrent
blocks share one installation) and removes them when the last one leaves;
the replacements ask `acting()` and behave as the originals in every thread
that is not inside a block.

Example:
    >>> patch = ThreadScopedPatch(install)   # install() -> a function that restores
    >>> with patch.active():
    ...     patch.acting()
    True
"""

import contextlib
import threading


class ThreadScopedPatch:
    """See the module docstring. `install()` makes the replacements and
    returns a callable that undoes them."""

    def __init__(self, install):
        self._install = install
        self._lock = threading.Lock()
        self._count = 0
        self._restore = None
        self._local = threading.local()

    def acting(self) -> bool:
        """True in a thread that is inside `active()`."""
        return getattr(self._local, "depth", 0) > 0

    @contextlib.contextmanager
    def active(self):
        """The replacements are installed (for every thread) and act for
        this thread while the block runs."""
        with self._lock:
            if self._count == 0:
                self._restore = self._install()
            self._count += 1
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield
        finally:
            self._local.depth -= 1
            with self._lock:
                self._count -= 1
                if self._count == 0:
                    restore, self._restore = self._restore, None
                    restore()
