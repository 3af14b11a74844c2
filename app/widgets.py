"""Small helpers shared by the panels."""

from __future__ import annotations

from PySide6.QtWidgets import QWidget


def name_widget(widget: QWidget, name: str, accessible: str | None = None, tip: str | None = None) -> QWidget:
    """objectName and accessible name, as tests and assistive technology find widgets by them;
    a tooltip (the accessible description when no `tip` is given: every control has one)."""
    widget.setObjectName(name)
    widget.setAccessibleName(name)
    if accessible:
        widget.setAccessibleDescription(accessible)
    if tip:
        widget.setToolTip(tip)
    elif accessible and not widget.toolTip():  # a widget's own tooltip says more
        widget.setToolTip(accessible)
    return widget
