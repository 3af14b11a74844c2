"""The mask canvas (`maskCanvas`): the input image with a mask painted over it, for a Fill model.

A brush paints white (repaint) into a grey mask at the image's own resolution, shown as a
translucent red over the image; the eraser paints black (keep). Every stroke, Clear and Invert
can be undone (Cmd/Ctrl+Z); `[` and `]` change the brush size. The margins of "Expand canvas"
are drawn as the empty border the model will fill. Widgets only: no files, no MLX.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import QEvent, QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QKeySequence, QPainter, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.imageview import paint_frame

BRUSH_MIN, BRUSH_MAX, BRUSH_DEFAULT = 2, 512, 48  # px of the image
OVERLAY = QColor(255, 0, 0, 128)  # the mask as it is shown: red at 50%
UNDO_LIMIT = 30


def bigger(size: int) -> int:
    return min(BRUSH_MAX, max(size + 1, round(size * 1.25)))


def smaller(size: int) -> int:
    return max(BRUSH_MIN, min(size - 1, round(size / 1.25)))


class MaskCanvas(QWidget):
    changed = Signal()  # the mask changed (a stroke, clear, invert, undo)
    brushSizeChanged = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image = QImage()
        self._mask = QImage()  # Format_Grayscale8, the image's size: 255 repaint, 0 keep
        self._undo: list[QImage] = []
        self._brush = BRUSH_DEFAULT
        self._erasing = False
        self._last: QPointF | None = None
        self._margins = (0, 0, 0, 0)  # left, top, right, bottom, in image pixels
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMouseTracking(True)
        self.setCursor(Qt.CursorShape.CrossCursor)

    # -- content ----------------------------------------------------------------------------
    def has_image(self) -> bool:
        return not self._image.isNull()

    def set_image(self, image: QImage, mask: QImage | None = None) -> None:
        """Paint on `image`; a new, empty mask unless `mask` (any grey image) is given."""
        self._image = image
        self._undo.clear()
        self._mask = QImage(image.size(), QImage.Format.Format_Grayscale8)
        self._mask.fill(0)
        if mask is not None and not mask.isNull():
            self._mask = mask.convertToFormat(QImage.Format.Format_Grayscale8).scaled(image.size())
        self.update()
        self.changed.emit()

    def mask(self) -> QImage:
        return self._mask

    def mask_pil(self) -> Image.Image | None:
        """The mask as a grey PIL image (white: repaint), or None without an image."""
        if self._mask.isNull():
            return None
        m = self._mask
        arr = np.frombuffer(m.constBits(), np.uint8, m.bytesPerLine() * m.height())
        arr = arr.reshape(m.height(), m.bytesPerLine())[:, :m.width()]
        return Image.fromarray(arr.copy(), "L")

    def is_empty(self) -> bool:
        pil = self.mask_pil()
        return pil is None or pil.getbbox() is None

    def brush_size(self) -> int:
        return self._brush

    def set_brush_size(self, size: int) -> None:
        size = max(BRUSH_MIN, min(BRUSH_MAX, int(size)))
        if size != self._brush:
            self._brush = size
            self.brushSizeChanged.emit(size)
            self.update()

    def set_erasing(self, erasing: bool) -> None:
        self._erasing = erasing

    def erasing(self) -> bool:
        return self._erasing

    def set_margins(self, margins: tuple[int, int, int, int]) -> None:
        self._margins = tuple(int(v) for v in margins)
        self.update()

    def margins(self) -> tuple[int, int, int, int]:
        return self._margins

    # -- editing --------------------------------------------------------------------------
    def can_undo(self) -> bool:
        return bool(self._undo)

    def undo(self) -> None:
        if self._undo:
            self._mask = self._undo.pop()
            self.update()
            self.changed.emit()

    def clear(self) -> None:
        if self._mask.isNull():
            return
        self._remember()
        self._mask.fill(0)
        self.update()
        self.changed.emit()

    def invert(self) -> None:
        if self._mask.isNull():
            return
        self._remember()
        self._mask.invertPixels()
        self.update()
        self.changed.emit()

    def _remember(self) -> None:
        self._undo.append(self._mask.copy())
        del self._undo[:-UNDO_LIMIT]

    # -- geometry -------------------------------------------------------------------------
    def canvas_rect(self) -> QRectF:
        """Where the image with its expanded border is drawn, as large as fits."""
        if self._image.isNull():
            return QRectF()
        l, t, r, b = self._margins
        full = QSize(self._image.width() + l + r, self._image.height() + t + b)
        area = QRectF(self.rect()).adjusted(12, 12, -12, -12)
        size = full.toSizeF().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
        top_left = area.center() - QRectF(0, 0, size.width(), size.height()).center()
        return QRectF(top_left, size)

    def _scale(self) -> float:
        canvas = self.canvas_rect()
        l, t, r, b = self._margins
        return canvas.width() / max(1, self._image.width() + l + r)

    def image_rect(self) -> QRectF:
        canvas, s = self.canvas_rect(), self._scale()
        l, t = self._margins[:2]
        return QRectF(canvas.left() + l * s, canvas.top() + t * s, self._image.width() * s, self._image.height() * s)

    def to_image(self, pos: QPointF) -> QPointF:
        rect, s = self.image_rect(), self._scale()
        return QPointF((pos.x() - rect.left()) / s, (pos.y() - rect.top()) / s)

    # -- painting -------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        palette = paint_frame(painter, self)
        if self._image.isNull():
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, "Put an image in the input well to paint a mask")
            return
        canvas, target = self.canvas_rect(), self.image_rect()
        if any(self._margins):  # the border to be filled: empty, outlined
            pen = QPen(palette.color(QPalette.ColorRole.Highlight), 1.5, Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.BDiagPattern)
            painter.drawRect(canvas)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(target, self._image)
        overlay = QImage(self._mask.size(), QImage.Format.Format_ARGB32_Premultiplied)
        painter.setOpacity(OVERLAY.alphaF())
        overlay.fill(QColor(OVERLAY.red(), OVERLAY.green(), OVERLAY.blue()))
        overlay.setAlphaChannel(self._mask)
        painter.drawImage(target, overlay)
        painter.setOpacity(1.0)
        pos = self.mapFromGlobal(self.cursor().pos())
        if self.rect().contains(pos) and self.underMouse():
            painter.setPen(QPen(palette.color(QPalette.ColorRole.Text), 1))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            radius = self._brush * self._scale() / 2
            painter.drawEllipse(QPointF(pos), radius, radius)

    def _stroke(self, start: QPointF, end: QPointF) -> None:
        painter = QPainter(self._mask)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        colour = QColor(0, 0, 0) if self._erasing else QColor(255, 255, 255)
        pen = QPen(colour, self._brush, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap, Qt.PenJoinStyle.RoundJoin)
        painter.setPen(pen)
        if start == end:
            painter.setBrush(colour)
            painter.setPen(Qt.PenStyle.NoPen)
            painter.drawEllipse(start, self._brush / 2, self._brush / 2)
        else:
            painter.drawLine(start, end)
        painter.end()
        self.update()

    # -- mouse and keys -----------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and self.has_image():
            self.setFocus(Qt.FocusReason.MouseFocusReason)
            self._remember()
            self._last = self.to_image(event.position())
            self._stroke(self._last, self._last)
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._last is not None and event.buttons() & Qt.MouseButton.LeftButton:
            point = self.to_image(event.position())
            self._stroke(self._last, point)
            self._last = point
        else:
            self.update()  # the brush outline follows the pointer
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._last is not None and event.button() == Qt.MouseButton.LeftButton:
            point = self.to_image(event.position())
            self._stroke(self._last, point)
            self._last = None
            self.changed.emit()
        super().mouseReleaseEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: N802
        self.update()
        super().leaveEvent(event)

    def event(self, event) -> bool:
        # Ours while the canvas has the focus, ahead of any window-wide shortcut on the same keys.
        if event.type() == QEvent.Type.ShortcutOverride and self._handles(event):
            event.accept()
            return True
        return super().event(event)

    @staticmethod
    def _handles(event) -> bool:
        return event.matches(QKeySequence.StandardKey.Undo) or event.key() in (Qt.Key.Key_BracketLeft,
                                                                              Qt.Key.Key_BracketRight)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.matches(QKeySequence.StandardKey.Undo):
            self.undo()
        elif event.key() == Qt.Key.Key_BracketLeft:
            self.set_brush_size(smaller(self._brush))
        elif event.key() == Qt.Key.Key_BracketRight:
            self.set_brush_size(bigger(self._brush))
        else:
            super().keyPressEvent(event)
