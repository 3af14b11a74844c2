"""A guard against a reference-counting defect of PySide6 6.12 builds on CPython 3.11 and older.

In those builds every call of a void Qt method from Python (`label.setText(...)`,
`widget.update()`, ...) drops one reference to `None`, and every `Signal.emit()` drops one
to `True`, without having taken it. CPython 3.12+ makes these singletons immortal, so the
defect is invisible there; on 3.11 their counts run down as the app works, and after a few
thousand calls the interpreter aborts ("deallocating None" / "deallocating True or False"),
often at exit, losing nothing but looking like a crash to the person using the app.

We detect the defect with a short probe and, only if present, give the three singletons
the same "never reaches zero" property 3.12 has, by adding a large headroom to their
reference counts. They are static objects that are never freed, so the extra count has no
other effect.
"""

from __future__ import annotations

import ctypes
import logging
import sys

log = logging.getLogger(__name__)

_HEADROOM = 1 << 40  # more calls than an app could make in years
_PROBES = 64
_applied = False


def _defect_present() -> bool:
    from PySide6.QtCore import QObject, Signal

    class _Probe(QObject):
        ping = Signal()

    probe = _Probe()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(_PROBES):
        probe.setObjectName("probe")  # a void method
        probe.ping.emit()
    lost_none = none_before - sys.getrefcount(None)
    lost_true = true_before - sys.getrefcount(True)
    return lost_none >= _PROBES // 2 or lost_true >= _PROBES // 2


def apply() -> bool:
    """Protect None/True/False if this PySide build needs it; True when the guard was applied."""
    global _applied
    if _applied:
        return True
    if sys.version_info >= (3, 12) or sys.implementation.name != "cpython":
        return False  # immortal singletons: nothing to protect
    if hasattr(sys, "gettotalrefcount"):
        return False  # debug build: the object layout differs, and leaks should be seen there
    if not _defect_present():
        return False
    for singleton in (None, True, False):
        # ob_refcnt is the first field of every object in release builds of CPython.
        ctypes.c_ssize_t.from_address(id(singleton)).value += _HEADROOM
    _applied = True
    log.info("PySide reference-count guard applied (CPython %s)", sys.version.split()[0])
    return True
