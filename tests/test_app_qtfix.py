"""The guard against PySide's None/True reference leak keeps a long session from aborting."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_many_qt_calls_and_emits_do_not_abort_the_interpreter():
    # Far more calls than the singletons' natural reference counts on CPython 3.11; without the
    # guard an affected PySide build aborts with "deallocating None" here or at exit.
    script = textwrap.dedent("""
        import app
        from PySide6.QtCore import QObject, Signal

        class Box(QObject):
            changed = Signal(int)

        box = Box()
        box.changed.connect(lambda v: None)
        for i in range(200_000):
            box.setObjectName("x")
            box.changed.emit(i)
        print("ok")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_guard_is_idempotent():
    from app import qtfix

    first = qtfix.apply()
    assert qtfix.apply() == first
