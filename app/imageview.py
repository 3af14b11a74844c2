"""The large image area: shows live previews and the finished image, scaled to fit, and lets
a person drag the image out to Finder or another app."""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QMimeData, QPoint, QRectF, QSize, Qt
from PySide6.QtGui import QDrag, QImage, QPainter, QPalette, QPen
from PySide6.QtWidgets import QApplication, QSizePolicy, QWidget


def paint_frame(painter: QPainter, widget: QWidget) -> QPalette:
    """The rounded frame the image widgets draw their content in; returns the widget's palette.
    Palette roles only, so the frame follows light and dark appearance."""
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    palette = widget.palette()
    painter.setPen(QPen(palette.color(QPalette.ColorRole.Mid), 1))
    painter.setBrush(palette.color(QPalette.ColorRole.Base))
    painter.drawRoundedRect(QRectF(widget.rect()).adjusted(0.5, 0.5, -0.5, -0.5), 8, 8)
    return palette


class ImageView(QWidget):
    """Paints one QImage centred and scaled to fit (up or down), or a hint when there is none."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image = QImage()
        self._is_preview = False
        self._placeholder = ""
        self._drag_start: QPoint | None = None
        self.drag_mime: Callable[[], QMimeData | None] | None = None  # set by the window
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    # -- content -------------------------------------------------------------------------
    def image(self) -> QImage:
        return self._image

    def is_preview(self) -> bool:
        return self._is_preview

    def set_image(self, image: QImage, preview: bool = False) -> None:
        self._image = image
        self._is_preview = preview
        self.update()

    def clear(self) -> None:
        self.set_image(QImage())

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(640, 640)

    def image_rect(self) -> QRectF:
        """Where the image is drawn: as large as fits, keeping its aspect ratio."""
        if self._image.isNull():
            return QRectF()
        area = QRectF(self.rect()).adjusted(12, 12, -12, -12)
        size = QSize(self._image.size()).toSizeF().scaled(area.size(), Qt.AspectRatioMode.KeepAspectRatio)
        top_left = area.center() - QRectF(0, 0, size.width(), size.height()).center()
        return QRectF(top_left, size)

    # -- painting --------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        palette = paint_frame(painter, self)
        if self._image.isNull():
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.rect().adjusted(24, 24, -24, -24),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
            return
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawImage(self.image_rect(), self._image)

    # -- drag out ----------------------------------------------------------------------------
    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and self.image_rect().contains(event.position()):
            self._drag_start = event.position().toPoint()
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if (
            self._drag_start is not None
            and event.buttons() & Qt.MouseButton.LeftButton
            and (event.position().toPoint() - self._drag_start).manhattanLength()
            >= QApplication.startDragDistance()
        ):
            self._drag_start = None
            mime = self.drag_mime() if self.drag_mime else None
            if mime is not None:
                drag = QDrag(self)
                drag.setMimeData(mime)
                thumb = self._image.scaled(128, 128, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation)
                drag.setPixmap(_pixmap(thumb))
                drag.exec(Qt.DropAction.CopyAction)
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        self._drag_start = None
        super().mouseReleaseEvent(event)


def _pixmap(image: QImage):
    from PySide6.QtGui import QPixmap

    return QPixmap.fromImage(image)
