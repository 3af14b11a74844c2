"""The input-image section of the controls, under the prompt: the well (`inputImageView`) that an
image is dropped on, Open… (`openInputButton`) and Clear (`clearInputButton`), and the img2img
strength (`strengthSlider` with its typed value `strengthSpin`, 0.05..1, shown only for img2img).

Widgets only: the window's input controller reads and copies files and fills the well; the
controls read `stored()` and `strength()` for the next image. What the well asks for follows the
model: a text-to-image model starts from the image (img2img), a Kontext model edits it.
"""

from __future__ import annotations

from PySide6.QtCore import QMimeData, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPalette, QPen
from PySide6.QtWidgets import (
    QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QSlider, QVBoxLayout, QWidget,
)

from app.inputs import SUFFIXES, StoredInput, short_hash
from app.widgets import link_slider_spin, name_widget

STRENGTH_MIN, STRENGTH_MAX, STRENGTH_DEFAULT, STRENGTH_STEP = 0.05, 1.0, 0.6, 0.05
STRENGTH_UNITS = 100  # the slider counts hundredths
WELL_HEIGHT = 76
IMG2IMG_HINT = ("Drop an image here to start from it",
                "Dropped elsewhere, a PNG restores its settings")  # short: the well is narrow
EDIT_HINT = ("Drop the image to edit",
             "Without one, this Kontext model makes a new image from the prompt")
STRENGTH_TIP = ("How much of the input is repainted: low keeps it close, 1.0 ignores it "
                "(default 0.6). Type a value or drag.")


def dropped_files(mime: QMimeData) -> list[str]:
    return [url.toLocalFile() for url in (mime.urls() if mime.hasUrls() else [])
            if url.isLocalFile() and url.toLocalFile().lower().endswith(SUFFIXES)]


class InputImageView(QWidget):
    """The well: a dashed drop target with a hint when empty; the input's preview and what it is
    when filled. Emits what was dropped; a click on the empty well asks to open a file."""

    fileDropped = Signal(str)
    imageDropped = Signal(QImage)  # pixels without a file (dragged from a browser, or our own view)
    openRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.setFixedHeight(WELL_HEIGHT)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFocusPolicy(Qt.FocusPolicy.TabFocus)
        self._preview = QImage()
        self._lines: tuple[str, str] = IMG2IMG_HINT
        self._hint: tuple[str, str] = IMG2IMG_HINT
        self._busy = False
        self._hover = False

    # -- content ----------------------------------------------------------------------------
    def preview(self) -> QImage:
        return self._preview

    def has_image(self) -> bool:
        return not self._preview.isNull()

    def set_hint(self, hint: tuple[str, str]) -> None:
        self._hint = hint
        self.setToolTip(f"{hint[0]}.\n{hint[1]}.")
        self.update()

    def placeholder(self) -> str:
        return "\n".join(self._hint)

    def set_busy(self, busy: bool) -> None:
        self._busy = busy
        self.update()

    def set_image(self, preview: QImage, lines: tuple[str, str]) -> None:
        self._preview, self._lines, self._busy = preview, lines, False
        self.setAccessibleDescription(" · ".join(lines))
        self.update()

    def clear(self) -> None:
        self._preview, self._busy = QImage(), False
        self.setAccessibleDescription(self.placeholder())
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(240, WELL_HEIGHT)

    # -- painting ---------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        palette = self.palette()
        frame = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        accent = palette.color(QPalette.ColorRole.Highlight)
        pen = QPen(accent if self._hover else palette.color(QPalette.ColorRole.Mid), 1.5 if self._hover else 1)
        if not self.has_image():
            pen.setStyle(Qt.PenStyle.DashLine)
        painter.setPen(pen)
        painter.setBrush(palette.color(QPalette.ColorRole.Base))
        painter.drawRoundedRect(frame, 7, 7)
        inner = self.rect().adjusted(8, 6, -8, -6)
        if not self.has_image():
            lines = ("Reading the image…", "") if self._busy else self._hint
            self._draw_lines(painter, inner, lines, Qt.AlignmentFlag.AlignCenter)
            return
        side = inner.height()
        size = self._preview.size().scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio)
        target = QRectF(inner.left() + (side - size.width()) / 2, inner.top() + (side - size.height()) / 2,
                        size.width(), size.height())
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(target, self._preview)
        text_rect = inner.adjusted(side + 10, 0, 0, 0)
        self._draw_lines(painter, text_rect, self._lines, Qt.AlignmentFlag.AlignLeft)

    def _draw_lines(self, painter: QPainter, rect, lines: tuple[str, str], align) -> None:
        palette = self.palette()
        metrics = self.fontMetrics()
        small = self.font()
        small.setPointSizeF(max(7.0, small.pointSizeF() * 0.85))
        first, second = lines
        painter.setPen(palette.color(QPalette.ColorRole.Text if self.has_image() else
                                     QPalette.ColorRole.PlaceholderText))
        height = metrics.lineSpacing() * (2 if second else 1) + 2
        top = rect.top() + (rect.height() - height) // 2
        painter.drawText(rect.left(), top, rect.width(), metrics.lineSpacing(),
                         align | Qt.AlignmentFlag.AlignVCenter,
                         metrics.elidedText(first, Qt.TextElideMode.ElideMiddle, rect.width()))
        if second:
            painter.setFont(small)
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            small_metrics = painter.fontMetrics()
            painter.drawText(rect.left(), top + metrics.lineSpacing() + 2, rect.width(), small_metrics.lineSpacing(),
                             align | Qt.AlignmentFlag.AlignVCenter,
                             small_metrics.elidedText(second, Qt.TextElideMode.ElideRight, rect.width()))

    # -- drops and clicks ---------------------------------------------------------------------
    def _accepts(self, mime: QMimeData) -> bool:
        return bool(dropped_files(mime)) or mime.hasImage()

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        if self._accepts(event.mimeData()):
            event.acceptProposedAction()
            self._hover = True
            self.update()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dragLeaveEvent(self, event) -> None:  # noqa: N802
        self._hover = False
        self.update()

    def dropEvent(self, event) -> None:  # noqa: N802
        self._hover = False
        self.update()
        mime = event.mimeData()
        files = dropped_files(mime)
        if files:
            event.acceptProposedAction()
            self.fileDropped.emit(files[0])
        elif mime.hasImage():
            event.acceptProposedAction()
            self.imageDropped.emit(QImage(mime.imageData()))
        else:
            event.ignore()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and not self.has_image() and not self._busy:
            self.openRequested.emit()
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() in (Qt.Key.Key_Space, Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.openRequested.emit()
            return
        super().keyPressEvent(event)


class InputPanel(QWidget):
    changed = Signal()  # an input was set or cleared
    openRequested = Signal()
    clearRequested = Signal()
    inpaintToggled = Signal(bool)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("inputPanel")
        self._stored: StoredInput | None = None
        self._edits = False
        self._fills = False

        self.titleLabel = QLabel("Input image")
        self.openInputButton = name_widget(QPushButton("Open…"), "openInputButton", "Open an input image",
                                           "Start from an image file (or drop one on the well below)")
        self.clearInputButton = name_widget(QPushButton("Clear"), "clearInputButton", "Remove the input image",
                                            "Remove the input image: back to text-to-image")
        self.inpaintButton = name_widget(QPushButton("Inpaint"), "inpaintButton", "Paint a mask on the input image",
                                         "Paint where the image is repainted (or expand its canvas); "
                                         "a Fill model repaints only there")
        self.inpaintButton.setCheckable(True)
        self.inpaintButton.toggled.connect(self._on_inpaint)
        for button in (self.openInputButton, self.clearInputButton, self.inpaintButton):
            button.setAutoDefault(False)
        self.openInputButton.clicked.connect(self.openRequested)
        self.clearInputButton.clicked.connect(self.clearRequested)
        self.inputImageView = name_widget(InputImageView(), "inputImageView", "The input image")
        self.inputImageView.openRequested.connect(self.openRequested)

        self.strengthLabel = QLabel("Strength")
        self.strengthSlider = name_widget(QSlider(Qt.Orientation.Horizontal), "strengthSlider",
                                          "How much of the input image is repainted", STRENGTH_TIP)
        self.strengthSlider.setRange(round(STRENGTH_MIN * STRENGTH_UNITS), round(STRENGTH_MAX * STRENGTH_UNITS))
        self.strengthSlider.setSingleStep(round(STRENGTH_STEP * STRENGTH_UNITS))
        self.strengthSlider.setPageStep(10)
        self.strengthSpin = name_widget(QDoubleSpinBox(), "strengthSpin", "How much of the input image is repainted",
                                        STRENGTH_TIP)
        self.strengthSpin.setRange(STRENGTH_MIN, STRENGTH_MAX)
        self.strengthSpin.setSingleStep(STRENGTH_STEP)
        self.strengthSpin.setDecimals(2)
        link_slider_spin(self.strengthSlider, self.strengthSpin, STRENGTH_UNITS)
        self.strengthLabel.setBuddy(self.strengthSpin)
        self.set_strength(STRENGTH_DEFAULT)

        header = QHBoxLayout()
        header.setSpacing(6)
        header.addWidget(self.titleLabel, 1)
        header.addWidget(self.openInputButton)
        header.addWidget(self.clearInputButton)
        strength = QHBoxLayout()
        strength.setSpacing(6)
        strength.addWidget(self.inpaintButton)  # under the well: Inpaint, or img2img's strength
        strength.addWidget(self.strengthLabel)
        strength.addWidget(self.strengthSlider, 1)
        strength.addWidget(self.strengthSpin)
        strength.addStretch(0)  # a lone Inpaint button stays its own size
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(self.inputImageView)
        layout.addLayout(strength)
        self.set_edits(False)

    # -- state ----------------------------------------------------------------------------
    def stored(self) -> StoredInput | None:
        """The input of the next image (None: text-to-image)."""
        return self._stored

    def edits(self) -> bool:
        return self._edits

    def strength(self) -> float:
        return round(self.strengthSpin.value(), 2)

    def set_strength(self, value: float) -> None:
        self.strengthSpin.setValue(max(STRENGTH_MIN, min(STRENGTH_MAX, float(value))))  # the slider follows

    def set_edits(self, edits: bool) -> None:
        """The model edits its input (Kontext) rather than starting from it (img2img)."""
        self._edits = edits
        self.titleLabel.setText("Image to edit" if edits else "Input image")
        self.inputImageView.set_hint(EDIT_HINT if edits else IMG2IMG_HINT)
        self._refresh()

    def fills(self) -> bool:
        return self._fills

    def set_fills(self, fills: bool) -> None:
        """A Fill model: its input is always inpainted (or outpainted), so Inpaint is on."""
        was, self._fills = self._fills, fills
        if fills != was:
            self.inpaintButton.setChecked(fills)
        self._refresh()

    def inpaints(self) -> bool:
        """The next image repaints a mask of the input (or its expanded border)."""
        return self._stored is not None and self.inpaintButton.isChecked()

    def set_busy(self) -> None:
        self.inputImageView.set_busy(True)

    def set_input(self, stored: StoredInput, preview: QImage) -> None:
        self._stored = stored
        self.inputImageView.set_image(preview, self._lines())
        self._refresh()
        self.changed.emit()

    def clear(self) -> None:
        had = self._stored is not None
        self._stored = None
        self.inputImageView.clear()
        self._refresh()
        if had:
            self.changed.emit()

    # -- internals ------------------------------------------------------------------------
    def _lines(self) -> tuple[str, str]:
        s = self._stored
        if s is None:
            return ("", "")
        what = "edited by the prompt" if self._edits else "inpainted" if self.inpaints() else "img2img start"
        return (s.name or f"input {short_hash(s.fingerprint)}", f"{s.width}×{s.height} · {what}")

    def _refresh(self) -> None:
        has = self._stored is not None
        img2img = has and not self._edits
        self.clearInputButton.setVisible(has)
        self.inpaintButton.setVisible(has)
        for widget in (self.strengthLabel, self.strengthSlider, self.strengthSpin):
            widget.setVisible(img2img and not self.inpaints())
        if has:
            self.inputImageView.set_image(self.inputImageView.preview(), self._lines())

    def _on_inpaint(self, on: bool) -> None:
        self._refresh()
        self.inpaintToggled.emit(on)
