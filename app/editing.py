"""The Edit menu's Undo, Redo, Cut, Copy, Paste and Select All act on the text field that has
the keyboard focus (the prompt, the history search, a spin box), as in any Mac app; Undo also
undoes the mask canvas's last stroke. Normally the
field takes its own shortcut first; the menu items are for the mouse, and for when it doesn't."""

from __future__ import annotations

from typing import Callable

from PySide6.QtWidgets import QAbstractSpinBox, QApplication, QComboBox, QLineEdit, QPlainTextEdit, QTextEdit, QWidget

OPERATIONS = ("undo", "redo", "cut", "copy", "paste", "selectAll")


def text_target(widget: QWidget | None) -> QWidget | None:
    """The editable text behind `widget`: itself, or a spin box's or editable combo's line edit."""
    if isinstance(widget, (QLineEdit, QPlainTextEdit, QTextEdit)):
        return widget
    if isinstance(widget, QAbstractSpinBox):
        return widget.findChild(QLineEdit)
    if isinstance(widget, QComboBox) and widget.isEditable():
        return widget.lineEdit()
    return None


def edit_focused(operation: str, otherwise: Callable[[], object] | None = None) -> bool:
    """Do `operation` (one of OPERATIONS) on the focused text; else call `otherwise` (Copy with
    no text focused copies the image). True when a text field took it."""
    focused = QApplication.focusWidget()
    target = text_target(focused)
    if target is None and operation == "undo" and callable(getattr(focused, "undo", None)):
        target = focused  # the mask canvas undoes its last stroke
    if target is None:
        if otherwise is not None:
            otherwise()
        return False
    getattr(target, operation)()
    return True
