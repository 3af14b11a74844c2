"""A clear focus ring on the text fields a person types in (the prompt, the history search),
so keyboard users see where their typing goes. Other controls keep the platform's own focus
drawing: a style-sheet border replaces a widget's native look altogether, which a plain text
box can afford and a button or spin box cannot."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget

# Both states take 2 px (border + padding), so the text does not shift when the focus comes.
FOCUS_RING = """
QPlainTextEdit#promptEdit, QLineEdit#historySearch {
    border: 1px solid palette(mid);
    border-radius: 4px;
    padding: 1px;
    background: palette(base);
}
QPlainTextEdit#promptEdit:focus, QLineEdit#historySearch:focus {
    border: 2px solid palette(highlight);
    padding: 0px;
}
"""


def apply_focus_ring(window: QWidget) -> None:
    window.setStyleSheet(window.styleSheet() + FOCUS_RING)
