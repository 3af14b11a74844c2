"""The mask editor that takes the image view's place while inpainting (a Fill model, or "Inpaint"
picked on the input image): the canvas (`maskCanvas`), its tools (brush size `brushSizeSpin`,
`eraserButton`, `undoMaskButton`, `clearMaskButton`, `invertMaskButton`) and "Expand canvas":
per-side margins (`expandLeftSpin`, `expandTopSpin`, `expandRightSpin`, `expandBottomSpin`,
multiples of 16) with presets (`expandPresetCombo`). Widgets only."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget,
)

from app.maskcanvas import BRUSH_MAX, BRUSH_MIN, MaskCanvas
from app.params import SIZE_STEP
from app.widgets import name_widget

EXPAND_MAX = 1024
PRESETS = ("No expansion", "1.5× wider", "Square", "16:9")


def _snap_up(value: float) -> int:
    return max(0, int(-(-round(value) // SIZE_STEP)) * SIZE_STEP)


def preset_margins(name: str, width: int, height: int) -> tuple[int, int, int, int]:
    """Margins (left, top, right, bottom) that make a width x height image `name`'s shape,
    split evenly between the two sides, each a multiple of 16."""
    if name == "1.5× wider":
        extra_w, extra_h = width * 0.5, 0
    elif name == "Square":
        side = max(width, height)
        extra_w, extra_h = side - width, side - height
    elif name == "16:9":
        if width / height < 16 / 9:
            extra_w, extra_h = height * 16 / 9 - width, 0
        else:
            extra_w, extra_h = 0, width * 9 / 16 - height
    else:
        return (0, 0, 0, 0)
    side_w, side_h = _snap_up(extra_w / 2), _snap_up(extra_h / 2)
    return (min(side_w, EXPAND_MAX), min(side_h, EXPAND_MAX), min(side_w, EXPAND_MAX), min(side_h, EXPAND_MAX))


class MaskPanel(QWidget):
    expandChanged = Signal(object)  # (l, t, r, b)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("maskPanel")
        self.maskCanvas = name_widget(MaskCanvas(), "maskCanvas", "The inpainting mask",
                                      "Paint where the image is repainted. [ and ] change the brush; "
                                      "Cmd/Ctrl+Z undoes a stroke.")
        self.brushSizeSpin = name_widget(QSpinBox(), "brushSizeSpin", "Brush size", "Brush size in pixels ([ and ])")
        self.brushSizeSpin.setRange(BRUSH_MIN, BRUSH_MAX)
        self.brushSizeSpin.setSuffix(" px")
        self.brushSizeSpin.setValue(self.maskCanvas.brush_size())
        self.brushSizeSpin.valueChanged.connect(self.maskCanvas.set_brush_size)
        self.maskCanvas.brushSizeChanged.connect(self.brushSizeSpin.setValue)
        self.eraserButton = name_widget(QPushButton("Eraser"), "eraserButton", None,
                                        "Paint black: keep what is under the brush")
        self.eraserButton.setCheckable(True)
        self.eraserButton.toggled.connect(self.maskCanvas.set_erasing)
        self.undoMaskButton = name_widget(QPushButton("Undo"), "undoMaskButton", None, "Undo the last stroke")
        self.clearMaskButton = name_widget(QPushButton("Clear"), "clearMaskButton", None, "Clear the mask")
        self.invertMaskButton = name_widget(QPushButton("Invert"), "invertMaskButton", None,
                                            "Repaint everything but the mask")
        self.undoMaskButton.clicked.connect(self.maskCanvas.undo)
        self.clearMaskButton.clicked.connect(self.maskCanvas.clear)
        self.invertMaskButton.clicked.connect(self.maskCanvas.invert)
        for b in (self.eraserButton, self.undoMaskButton, self.clearMaskButton, self.invertMaskButton):
            b.setAutoDefault(False)
            b.setFocusPolicy(Qt.FocusPolicy.TabFocus)

        self.expandSpins = []
        expand = QHBoxLayout()
        expand_title = QHBoxLayout()
        expand_title.addWidget(QLabel("Expand canvas"))
        for side in ("Left", "Top", "Right", "Bottom"):
            spin = name_widget(QSpinBox(), f"expand{side}Spin", f"Pixels added on the {side.lower()}",
                               f"Pixels added on the {side.lower()} (a multiple of 16), filled by the model")
            spin.setRange(0, EXPAND_MAX)
            spin.setSingleStep(SIZE_STEP)
            spin.setKeyboardTracking(False)
            spin.valueChanged.connect(self._on_margin)
            setattr(self, spin.objectName(), spin)
            self.expandSpins.append(spin)
            expand.addWidget(QLabel(side[0]))
            expand.addWidget(spin)
        self.expandPresetCombo = name_widget(QComboBox(), "expandPresetCombo", "Expand preset",
                                             "Margins for a wider, square or 16:9 image")
        self.expandPresetCombo.addItems(PRESETS)
        self.expandPresetCombo.activated.connect(self._on_preset)
        expand_title.addWidget(self.expandPresetCombo)
        expand_title.addStretch(1)
        expand.addStretch(1)

        tools = QHBoxLayout()
        tools.addWidget(QLabel("Brush"))
        tools.addWidget(self.brushSizeSpin)
        tools.addWidget(self.eraserButton)
        tools.addStretch(1)
        for b in (self.undoMaskButton, self.clearMaskButton, self.invertMaskButton):
            tools.addWidget(b)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(6)
        layout.addLayout(tools)
        layout.addWidget(self.maskCanvas, 1)
        layout.addLayout(expand_title)
        layout.addLayout(expand)
        # Narrow windows squeeze the tools rather than the image panel's other rows.
        self.setMinimumWidth(240)

    def expand(self) -> tuple[int, int, int, int] | None:
        """The margins to add (None: none)."""
        sides = tuple(s.value() // SIZE_STEP * SIZE_STEP for s in self.expandSpins)
        return sides if any(sides) else None

    def set_expand(self, sides: tuple[int, int, int, int] | None) -> None:
        for spin, value in zip(self.expandSpins, sides or (0, 0, 0, 0)):
            spin.blockSignals(True)
            spin.setValue(int(value))
            spin.blockSignals(False)
        self._on_margin()

    def _on_margin(self, *_: object) -> None:
        for spin in self.expandSpins:  # typed values snap to multiples of 16
            snapped = spin.value() // SIZE_STEP * SIZE_STEP
            if snapped != spin.value():
                spin.setValue(snapped)
                return
        sides = tuple(s.value() for s in self.expandSpins)
        self.maskCanvas.set_margins(sides)
        self.expandChanged.emit(self.expand())

    def _on_preset(self, index: int) -> None:
        image = self.maskCanvas._image
        if image.isNull():
            return
        self.set_expand(preset_margins(PRESETS[index], image.width(), image.height()))
