"""How the command-line tools end on an error that the user can fix: one line, not a traceback.

``sys.exit(run_cli(main))`` runs ``main(argv)`` and turns the errors of bad input or a bad
environment (a missing or unreadable file, a config key or value that does not exist, weights of
another model, a folder that cannot be created, a full disk, a malformed annotation or prediction
file) into ``<tool>: error: <file>: <what was expected>`` on stderr and exit status 2. Any other
exception is a bug and keeps its traceback. ``--debug`` anywhere on the command line (it is taken
out before ``main`` parses it) or ``AINNOFACE_DEBUG=1`` shows the traceback of every error.

Errors of the processes that ``detectron2.engine.launch`` starts (``--num-gpus`` > 1) reach the
parent as ``torch.multiprocessing.ProcessRaisedException`` with the child's traceback as text;
they are shortened the same way, by the name of the child's exception.
"""

import builtins
import os
import re
import subprocess
import sys

__all__ = ["DEBUG_ENV", "EXPECTED", "debug_requested", "describe", "is_expected", "run_cli"]

DEBUG_ENV = "AINNOFACE_DEBUG"

# ConfigError, CheckpointError, WiderFaceFormatError and UnicodeDecodeError are ValueErrors;
# FileNotFoundError, PermissionError, NotADirectoryError and a full disk are OSErrors.
EXPECTED = (OSError, ValueError, EOFError, subprocess.CalledProcessError)
_EXPECTED_NAMES = {
    name
    for name, value in vars(builtins).items()
    if isinstance(value, type) and issubclass(value, EXPECTED)
} | {"CheckpointError", "ConfigError", "WiderFaceFormatError", "UnpicklingError", "BadZipFile"}
_ERRNO_TEXT = re.compile(r"^\[Errno \d+\] ")
_CHILD_ERROR = re.compile(r"^([A-Za-z_][\w.]*): (.*)$")


def debug_requested() -> bool:
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def _child_error(exc):
    """``(exception name, message)`` of a ``ProcessRaisedException``, or None."""
    text = str(exc).rstrip().splitlines()
    for i in range(len(text) - 1, -1, -1):
        match = _CHILD_ERROR.match(text[i])
        if match:
            message = "\n".join([match.group(2), *text[i + 1 :]])
            return match.group(1).rsplit(".", 1)[-1], message
    return None


def _is_child_exception(exc):
    return type(exc).__name__ == "ProcessRaisedException"


def is_expected(exc) -> bool:
    if isinstance(exc, EXPECTED):
        return True
    if _is_child_exception(exc):
        child = _child_error(exc)
        return child is not None and child[0] in _EXPECTED_NAMES
    return False


def describe(exc) -> str:
    """The text after ``error:``, starting with the file where the exception names one."""
    if isinstance(exc, subprocess.CalledProcessError):
        cmd = exc.cmd if isinstance(exc.cmd, str) else " ".join(map(str, exc.cmd))
        return f"`{cmd}` exited with status {exc.returncode} (its message is above)"
    if _is_child_exception(exc):
        return f"{_child_error(exc)[1]} (in a training process)"
    text = str(exc)
    if isinstance(exc, OSError) and exc.filename is not None and _ERRNO_TEXT.match(text):
        names = [exc.filename] + ([exc.filename2] if exc.filename2 is not None else [])
        return f"{': '.join(map(str, names))}: {exc.strerror}"
    return text or type(exc).__name__


def run_cli(main, argv=None, prog=None):
    """``main(argv)`` (``argv``: the command line without ``--debug``), its result returned; an
    expected error printed as one line with ``SystemExit(2)``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]
        os.environ[DEBUG_ENV] = "1"  # the processes a tool starts inherit it
    prog = prog or os.path.basename(sys.argv[0]) or "ainnoface"
    try:
        return main(argv)
    except Exception as exc:
        if debug_requested() or not is_expected(exc):
            raise
        print(f"{prog}: error: {describe(exc)}", file=sys.stderr)
        raise SystemExit(2) from None
