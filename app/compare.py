"""Two images side by side, zoomed and panned together, each with the settings that tell it apart."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QGridLayout, QLabel, QWidget

from app.imageview import ImageView
from app.loras import lora_text
from app.modelswitch import precision_text
from app.params import GenerationParams
from app.widgets import name_widget

# Settings in the order a person reads them, with how each one is written under its image.
_FIELDS = {
    "seed": lambda r: f"seed {r.seed}",
    "steps": lambda r: f"{r.steps} steps",
    "guidance": lambda r: "no guidance" if r.guidance is None else f"guidance {r.guidance:g}",
    "size": lambda r: f"{r.width}×{r.height}",
    "model": lambda r: str(r.model or "?"),
    "quantize": lambda r: precision_text(r.quantize),
    "loras": lambda r: f"LoRA {lora_text(r.loras)}" if r.loras else "no LoRA",
    "strength": lambda r: "—" if r.strength is None else f"strength {r.strength:g}",
    "image": lambda r: "from no image" if r.image is None else f"from {r.image.fingerprint[:8]}…",
    "mode": lambda r: str(r.mode or "text-to-image"),
    "prompt": lambda r: f"“{_elide(r.prompt, 60)}”",
}


def _value(params: GenerationParams, name: str):
    r = params.request
    return (r.width, r.height) if name == "size" else getattr(r, name)


def differences(a: GenerationParams | None, b: GenerationParams | None) -> tuple[list[str], list[str]]:
    """What differs between two images' settings, written for each: (['seed 3', '4 steps'],
    ['seed 4', '8 steps']); (['same settings'], ...) when nothing does."""
    if a is None or b is None:
        return ["no settings"] if a is None else [], ["no settings"] if b is None else []
    names = [name for name in _FIELDS if _value(a, name) != _value(b, name)]
    if not names:
        return ["same settings"], ["same settings"]
    return [_FIELDS[n](a.request) for n in names], [_FIELDS[n](b.request) for n in names]


def _elide(text: str, length: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= length else text[:length - 1] + "…"


class CompareView(QWidget):
    """Two image views that zoom and pan as one; under each, its differing settings."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.leftView = name_widget(ImageView(), "compareLeftView", "The first image compared")
        self.rightView = name_widget(ImageView(), "compareRightView", "The second image compared")
        self.leftLabel = QLabel()
        self.leftLabel.setObjectName("compareLeftLabel")
        self.rightLabel = QLabel()
        self.rightLabel.setObjectName("compareRightLabel")
        layout = QGridLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setHorizontalSpacing(8)
        layout.setVerticalSpacing(4)
        for column, (view, label) in enumerate(((self.leftView, self.leftLabel), (self.rightView, self.rightLabel))):
            view.setMinimumSize(120, 120)
            view.setToolTip("Zoom and pan either image: the other follows. Esc or Compare returns to one image.")
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            layout.addWidget(view, 0, column)
            layout.addWidget(label, 1, column)
            layout.setColumnStretch(column, 1)
        layout.setRowStretch(0, 1)
        self._syncing = False
        self.leftView.zoomChanged.connect(lambda: self._follow(self.leftView, self.rightView))
        self.rightView.zoomChanged.connect(lambda: self._follow(self.rightView, self.leftView))

    def set_images(self, left: tuple[QImage, GenerationParams | None], right: tuple[QImage, GenerationParams | None]) -> None:
        """Show two (image, settings) pairs; the zoom of the pair in view is kept."""
        ours, theirs = differences(left[1], right[1])
        self.leftView.set_image(left[0])
        self.rightView.set_image(right[0])
        self.rightView.set_view_state(self.leftView.view_state())
        for label, lines in ((self.leftLabel, ours), (self.rightLabel, theirs)):
            label.setText(" · ".join(lines))
            label.setToolTip("What differs from the other image")

    def _follow(self, source: ImageView, target: ImageView) -> None:
        if self._syncing:
            return
        self._syncing = True
        try:
            target.set_view_state(source.view_state())
        finally:
            self._syncing = False
