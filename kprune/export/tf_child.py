"""The persistent TensorFlow child of `kprune.export.to_tflite` on the JAX and
PyTorch backends: the parent side.

The LiteRT converter traces TensorFlow graphs, so a model that lives on the
JAX or PyTorch backend is converted by a Python child with
``KERAS_BACKEND=tensorflow`` (`kprune.export._tf_child`). Starting that child
(Python, TensorFlow, Keras) costs far more than a small conversion, and a
device-budget search converts dozens of models, so one child serves them all:
`convert` starts it on first use and sends it one work directory per line
over a pipe; it answers ``done <status>`` on a protocol pipe of its own (its
stdout and stderr go to a log file, whose tail goes into the error when it
dies). A child that died (killed, out of memory) is started again at the next
request. It is closed by `close`, at the end of a ``with session():`` block
that started it (`kprune.prune` runs inside one), and at interpreter exit.

Example:
    >>> with session():
    ...     status, log = convert(workdir)      # starts the child
    ...     status, log = convert(workdir2)     # the same child
    >>> STARTS["count"]
    1
"""

import atexit
import contextlib
import os
import subprocess
import sys
import tempfile
import threading

#: Children started in this process (tests and benchmarks count them).
STARTS = {"count": 0}
_LOG_TAIL = 2000


# -- parent side -------------------------------------------------------------------

class _Child:
    """One persistent child process and its log file."""

    def __init__(self):
        env = dict(os.environ, KERAS_BACKEND="tensorflow")
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        fd, self.log_path = tempfile.mkstemp(prefix="kprune_tf_child_", suffix=".log")
        self._log = os.fdopen(fd, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kprune.export._tf_child", "--serve"], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            bufsize=1)
        STARTS["count"] += 1

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def request(self, workdir: str):
        """Sends `workdir`; returns ``(sent, status)``: status None when the
        child died (before reading the request when `sent` is False)."""
        try:
            self.proc.stdin.write(workdir + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            return False, None
        line = self.proc.stdout.readline()
        if not line.startswith("done "):
            return True, None
        return True, int(line.split()[1])

    def log_tail(self) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(0, os.path.getsize(self.log_path) - _LOG_TAIL))
                return f.read().decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def close(self):
        try:
            if self.alive:
                self.proc.stdin.close()  # EOF: the child's loop ends
                try:
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
        except OSError:
            pass
        finally:
            for stream in (self.proc.stdin, self.proc.stdout, self._log):
                with contextlib.suppress(OSError, ValueError):
                    stream.close()
            with contextlib.suppress(OSError):
                os.remove(self.log_path)


_lock = threading.RLock()
_child = None
_sessions = []  # for each open `session`: whether a child was running at its start


def convert(workdir: str):
    """Converts the request in `workdir` in the persistent child (started, or
    started again after it died, as needed). Returns ``(status, log)``: 0
    when ``model.tflite`` was written, 1 for ``error.json``; otherwise the
    child died during the request (its exit code, or -1) and `log` is the
    tail of its output."""
    global _child
    with _lock:
        for _ in range(2):
            if _child is None or not _child.alive:  # first use, or it died idle
                if _child is not None:
                    _child.close()
                _child = _Child()
            sent, status = _child.request(workdir)
            if status is not None:
                return status, ""
            log = _child.log_tail()
            code = _child.proc.wait()
            _child.close()
            _child = None
            if sent:  # it died inside the request (the converter crashed): reported
                return (code if code else -1), log
            # it died before taking the request: one fresh child gets it
        return (code if code else -1), log


def running() -> bool:
    """True while a persistent child is up."""
    with _lock:
        return _child is not None and _child.alive


def pid():
    """The process id of the running child, or None."""
    with _lock:
        return _child.proc.pid if _child is not None and _child.alive else None


def close():
    """Stops the persistent child (if any); the next conversion starts one."""
    global _child
    with _lock:
        if _child is not None:
            _child.close()
            _child = None


@contextlib.contextmanager
def session():
    """Conversions inside share one child; it is closed at the end of the
    block when the block started it (nested and enclosing blocks keep theirs)."""
    with _lock:
        _sessions.append(running())
    try:
        yield
    finally:
        with _lock:
            was_running = _sessions.pop()
            if not was_running:
                close()


atexit.register(close)
