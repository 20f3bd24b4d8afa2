"""Atomic writes: a file is replaced only once its new content is complete on disk.

Every output that a later step trusts (checkpoints and ``last_checkpoint``, exported graphs and
their ``<graph>.json`` metadata, evaluation results, drawings) is written to a temporary file in
the same folder, flushed and ``fsync``-ed, then moved over the target with :func:`os.replace`
(atomic on POSIX and Windows when both are on one file system). A full disk or a killed process
leaves the previous file as it was, and the temporary file is removed when the write fails.
"""

import contextlib
import os
import tempfile

__all__ = [
    "atomic_path",
    "atomic_save_torch",
    "atomic_write",
    "atomic_write_json",
    "write_image",
]


def _fsync_dir(folder):
    """Make the rename itself durable where the platform lets a folder be opened (POSIX)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path):
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


@contextlib.contextmanager
def atomic_path(path, suffix=None, allow_empty=False):
    """Yield a temporary path beside ``path`` for a writer that takes a file name (ONNX, OpenCV,
    matplotlib); on success it replaces ``path``, on any error it is removed. ``suffix`` (default:
    ``path``'s extension) is kept because some writers choose the format by it. An empty result is
    an error unless ``allow_empty``: a writer that reports failure by writing nothing (OpenCV
    on a full disk) must not replace a good file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if suffix is None:
        suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=suffix, dir=folder)
    os.close(fd)
    try:
        yield tmp
        if os.path.getsize(tmp) == 0 and not allow_empty:
            raise OSError(f"{path}: the writer produced an empty file")
        _fsync_file(tmp)
        mode = os.stat(path).st_mode & 0o777 if os.path.exists(path) else _default_mode()
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    _fsync_dir(folder)


def _default_mode():
    """The mode a plain ``open(path, "w")`` would give (0o666 less the umask); mkstemp's 0o600
    would make outputs unreadable to the other users that a normal write lets read them."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_write(path, mode="w", **open_kwargs):
    """``open(path, mode)`` whose content replaces ``path`` only when the ``with`` block ends
    without an error; ``mode`` is ``"w"`` or ``"wb"`` (with the usual ``encoding``/``newline``).
    An empty result is written too: the block decides what the file holds."""
    if mode not in ("w", "wb", "wt", "bw", "tw"):
        raise ValueError(f"atomic_write writes a whole file: mode 'w' or 'wb', got {mode!r}")
    with atomic_path(path, allow_empty=True) as tmp:
        with open(tmp, mode, **open_kwargs) as f:
            yield f


def atomic_write_json(path, obj, **dump_kwargs):
    """``json.dump(obj)`` into ``path`` atomically (the text is built first: a value that cannot
    be serialised leaves no file at all)."""
    import json

    text = json.dumps(obj, **dump_kwargs)
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text + "\n")


def atomic_save_torch(obj, path):
    """``torch.save(obj, path)`` atomically."""
    import torch

    with atomic_write(path, "wb") as f:
        torch.save(obj, f)


def write_image(path, image):
    """``cv2.imwrite(path, image)`` atomically; ``OSError`` naming ``path`` when OpenCV writes
    nothing (it reports a full disk or an unwritable folder only by returning False)."""
    import cv2

    with atomic_path(path) as tmp:
        if not cv2.imwrite(tmp, image):
            raise OSError(f"{path}: OpenCV could not write this image")
