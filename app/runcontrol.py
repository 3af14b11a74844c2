"""The life of a run beyond its steps: stopping it (Esc, Cancel, quitting) and what outlives it.

- Esc acts where the focus is: in a text field it is the field's key (the history search
  clears; the prompt keeps its text), elsewhere it cancels. Cancelling more than one image asks
  first (confirmCancelBox); a single running image stops at once.
- Cancelled while decoding, an image cannot stop (the VAE has no steps): the progress says it
  will be discarded, and the worker throws it away.
- Closing the window during a run asks (confirmQuitBox). Stopping or finishing then goes on with
  the window alive and saying so; the close completes once the worker is idle, so no result is
  lost in flight and the worker thread is never destroyed while it runs.
- The typed prompt and the unfinished jobs outlive the app (settings and app/savedqueue.py);
  the next window offers the jobs, paused, and never starts them on its own.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from PySide6.QtCore import QCoreApplication, QEvent, QObject, Qt, QTimer
from PySide6.QtGui import QCloseEvent, QKeyEvent
from PySide6.QtWidgets import (
    QAbstractSpinBox, QApplication, QComboBox, QLineEdit, QMessageBox, QPlainTextEdit, QTextEdit, QWidget,
)

from app import savedqueue
from app.confirm import ask_cancel, ask_quit
from app.params import GenerationParams
from mlx_flux.engine import DECODE

if TYPE_CHECKING:
    from app.window import MainWindow

log = logging.getLogger(__name__)


def is_text_field(widget: QObject | None) -> bool:
    """Where Esc belongs to the widget (typing), not to the window's Cancel."""
    if isinstance(widget, QComboBox):
        return widget.isEditable()
    return isinstance(widget, (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox))


class RunControl(QObject):
    """Owned by the main window; see the module docstring."""

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.window = window
        self.quitting: str | None = None  # None | "asking" | "stopping" | "finishing" | "closing"
        self._quit_box: QMessageBox | None = None
        self._cancel_box: QMessageBox | None = None
        self._kept: dict[int, GenerationParams] = {}  # job id -> settings, kept for the next launch
        self.offered: list[GenerationParams] = []  # saved jobs the person has not answered yet
        q = window.queue
        q.phase.connect(self._on_phase)
        q.finished.connect(self._on_finished)
        q.idle.connect(self._on_idle)
        app = QApplication.instance()
        if app is not None:
            app.installEventFilter(self)

    # -- Esc where the focus is -------------------------------------------------------------
    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802
        kind = event.type()
        if kind not in (QEvent.Type.ShortcutOverride, QEvent.Type.KeyPress):
            return False
        if not isinstance(event, QKeyEvent) or event.key() != Qt.Key.Key_Escape or \
                event.modifiers() != Qt.KeyboardModifier.NoModifier:
            return False
        if not (isinstance(watched, QWidget) and watched.window() is self.window and is_text_field(watched)):
            return False
        if kind == QEvent.Type.ShortcutOverride:
            event.accept()  # the field takes the key: the window's Esc shortcut (Cancel) does not fire
            return True
        if watched is self.window.historySearch and self.window.historySearch.text():
            self.window.historySearch.clear()
            return True
        return False  # the field's own Esc (the prompt: nothing; a spin box: nothing)

    # -- cancelling ---------------------------------------------------------------------------
    def cancel_all(self) -> None:
        """Cancel, the menu item and Esc: the whole run and queue; asks when that is several images."""
        q = self.window.queue
        if not q.is_busy():
            return
        running, queued = len(q.running_jobs), len(q.pending)
        if running + queued <= 1:
            self._cancel_now()
        elif self._cancel_box is None:
            self._cancel_box = ask_cancel(self.window, running, queued, self._on_cancel_answer)

    def _on_cancel_answer(self, button: str) -> None:
        self._cancel_box = None
        if button == "cancelAllButton":
            self._cancel_now()

    def _cancel_now(self) -> None:
        q = self.window.queue
        if q.is_busy():
            self.window.imagePanel.show_cancelling()
            q.cancel_all()

    def _on_phase(self, phase: str) -> None:
        if phase != DECODE:
            return
        q, panel = self.window.queue, self.window.imagePanel
        if self.quitting == "stopping":
            panel.show_stopping()
        elif q.running is not None and all(q.is_cancelling(job) for job in q.running_jobs):
            panel.show_finishing()
        else:
            panel.show_decoding()

    def _on_finished(self, result) -> None:
        self._kept.pop(result.job.id, None)  # made after all: nothing to keep for next time
        self.window.imagePanel.note_decode(result.params.width, result.params.height, result.decode_seconds)
        if self.window.queue.running is not None and self.quitting is None:
            self.window.imagePanel.show_next_chunk()  # more of the batch: not "Decoding…" any more

    # -- quitting -----------------------------------------------------------------------------
    def may_close(self, event: QCloseEvent) -> bool:
        """closeEvent's question: close now (True), or later, once the run has stopped or
        finished as the person chose (False: the event is ignored meanwhile)."""
        q = self.window.queue
        if self.quitting == "closing" or not q.is_busy():
            return True
        event.ignore()
        if self.quitting in ("stopping", "finishing", "asking"):
            return False  # already on its way (or asking): a second Quit changes nothing
        if not q.running_jobs and not q.pending:  # only a model load or warm-up: stop it
            self._stop()
            return False
        self.quitting = "asking"
        self._quit_box = ask_quit(self.window, len(q.running_jobs), len(q.pending), self._on_quit_answer)
        return False

    def _on_quit_answer(self, button: str) -> None:
        self._quit_box = None
        self.quitting = None
        if button == "stopAndQuitButton":
            self._stop()
        elif button == "finishThenQuitButton":
            self._finish()
        if self.quitting in ("stopping", "finishing") and not self.window.queue.is_busy():
            self._close_soon()  # it ended while the question was up

    def _stop(self) -> None:
        """Stop at the next step, keep every unfinished job for next time, close when idle."""
        q = self.window.queue
        self.quitting = "stopping"
        self._kept.update({job.id: job.params for job in q.running_jobs + q.pending})
        self.window.imagePanel.show_stopping()
        self.window.statusBar().showMessage("Stopping… the app quits when the run has stopped")
        q.cancel_all()

    def _finish(self) -> None:
        """Let the images being made finish (and be saved); the queued ones wait for next time."""
        q = self.window.queue
        self.quitting = "finishing"
        self._kept.update({job.id: job.params for job in q.take_pending()})
        self.window.statusBar().showMessage("Finishing the images being made, then quitting…")

    def _on_idle(self) -> None:
        if self.quitting in ("stopping", "finishing"):
            self._close_soon()

    def _close_soon(self) -> None:
        self.quitting = "closing"
        QTimer.singleShot(0, self.window.close)

    def shutdown(self) -> None:
        """At the final close: let the worker thread end, then deliver what it sent on its way
        out (a finished image is added to the history before the history closes)."""
        self.window.queue.shutdown()
        QCoreApplication.sendPostedEvents(self.window.queue)
        app = QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)

    # -- what outlives the app ------------------------------------------------------------------
    def save_unfinished(self) -> None:
        """The prompt, and the jobs that were not made (offered ones not yet answered first)."""
        self.window.settings.prompt = self.window.promptEdit.toPlainText()
        savedqueue.save(self.window.data_dir.root, self.offered + list(self._kept.values()))

    def restore_unfinished(self) -> None:
        """At start: the prompt back in its field; saved jobs offered, never started on their own."""
        prompt = self.window.settings.prompt
        if prompt and not self.window.promptEdit.toPlainText():
            self.window.promptEdit.setPlainText(prompt)
            self.window.promptEdit.moveCursor(self.window.promptEdit.textCursor().MoveOperation.End)
        self.offered = savedqueue.load(self.window.data_dir.root)
        if not self.offered:
            return
        n = len(self.offered)
        text = ("1 image was" if n == 1 else f"{n} images were") + " still queued when the app quit."
        bar = self.window.messageBar
        if bar.kind:  # a startup problem said first stays readable
            text = f"{bar.text()}\n{text}"
        self.window.messageBar.show_offer(text, [
            ("Generate Them" if n > 1 else "Generate It", "generateSavedButton", "Queue them again, with their settings",
             self._generate_offered),
            ("Discard", "discardSavedButton", "Forget them", self._discard_offered),
        ])

    def _generate_offered(self) -> None:
        jobs, self.offered = self.offered, []
        savedqueue.save(self.window.data_dir.root, [])
        self.window.submit(jobs)

    def _discard_offered(self) -> None:
        self.offered = []
        savedqueue.save(self.window.data_dir.root, [])
