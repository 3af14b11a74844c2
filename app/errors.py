"""Turning exceptions from the engine, the disk or our own code into one line a person can act on."""

from __future__ import annotations

import errno

_OOM_MARKERS = ("out of memory", "attempting to allocate", "malloc", "insufficient memory", "outofmemory")


def describe_error(exc: BaseException) -> str:
    """A one-line, user-facing description of `exc` (the traceback goes to the log, not the window)."""
    text = _first_line(exc)
    try:
        from mlx_flux.errors import FluxError
    except ImportError:  # engine missing entirely: still describe the error
        FluxError = ()  # type: ignore[assignment]  # noqa: N806
    if FluxError and isinstance(exc, FluxError):
        return text or type(exc).__name__
    if isinstance(exc, MemoryError) or any(m in text.lower() for m in _OOM_MARKERS):
        return (
            "Out of memory. Try a smaller size, fewer images at once, "
            "or a quantized (8-bit or 4-bit) model."
        )
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        if exc.errno == errno.ENOSPC:
            return f"The disk is full{where}. Free some space and try again."
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"No permission to write{where}. Choose another folder or check its permissions."
        if isinstance(exc, FileNotFoundError):
            return f"File not found{where}."
        return f"{exc.strerror or text}{where}"
    # A bug, not the person's doing: say what happened in words, not a Python class name.
    what = f": {text}" if text else ""
    return f"Something unexpected stopped this{what}. The details are in mlx-flux.log in the data folder."


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else ""
