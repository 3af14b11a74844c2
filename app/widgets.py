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
    if tip or accessible:
        widget.setToolTip(tip or accessible)
    return widget
