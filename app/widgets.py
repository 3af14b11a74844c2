"""Small helpers shared by the panels."""

from __future__ import annotations

from PySide6.QtWidgets import QDoubleSpinBox, QSlider, QSpinBox, QWidget


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


def link_slider_spin(slider: QSlider, spin: QSpinBox | QDoubleSpinBox, units: int) -> None:
    """Keep `slider` (counting 1/`units`) and `spin`, its typed value, on one value: dragging sets
    the spin box, typing (once Return or Tab ends it: one change, not one per digit) moves the
    slider. A spin box showing its special "no value" text leaves the slider alone."""
    spin.setKeyboardTracking(False)

    def from_slider(value: int) -> None:
        if round(spin.value() * units) != value:
            spin.setValue(value / units if isinstance(spin, QDoubleSpinBox) else round(value / units))

    def from_spin(value: float) -> None:
        if not spin.specialValueText() and slider.value() != round(value * units):
            slider.setValue(round(value * units))

    slider.valueChanged.connect(from_slider)
    spin.valueChanged.connect(from_spin)
