"""A clear focus ring on the text fields a person types in (the prompt, the history search),
so keyboard users see where their typing goes. Other controls keep the platform's own focus
drawing: a style-sheet border replaces a widget's native look altogether, which a plain text
box can afford and a button or spin box cannot."""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QGuiApplication, QPalette
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


class _FocusRing(QObject):
    """Keeps the ring's style sheet on the field itself, not the window: a window-wide sheet
    puts every control under the style-sheet style, which stops following the palette (a switch
    to dark mode left buttons and combo boxes light). The sheet's colours are the application
    palette's, set again when it changes."""

    def __init__(self, field: QWidget) -> None:
        super().__init__(field)
        self.field = field
        app = QGuiApplication.instance()
        if app is not None:
            app.paletteChanged.connect(self._apply)
        self._apply()

    def _apply(self, *_: object) -> None:
        palette = QGuiApplication.palette()  # the application's: the field's own is the sheet's
        sheet = FOCUS_RING
        for role in ("mid", "highlight", "base"):
            colour = palette.color(getattr(QPalette.ColorRole, role.capitalize())).name()
            sheet = sheet.replace(f"palette({role})", colour)
        self.field.setStyleSheet(sheet)


def apply_focus_ring(window: QWidget) -> None:
    """The ring on the prompt and the history search (the fields a person types in)."""
    for field in (window.promptEdit, window.historySearch):
        _FocusRing(field)
