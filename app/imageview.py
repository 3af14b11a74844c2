"""The large image area: shows live previews and the finished image, fitted to the view or zoomed
(app/zoom.py) and panned, and lets a person drag the image out to Finder or another app.

At Fit a drag takes the image out. Zoomed past the view a plain drag pans, and Alt-drag (Option on
a Mac) takes the image out; the wheel and the scroll bars pan too, Ctrl+wheel and pinch zoom.
"""

from __future__ import annotations

from typing import Callable

from PySide6.QtCore import QEvent, QMimeData, QPoint, QPointF, QRectF, QSize, QSizeF, Qt, Signal
from PySide6.QtGui import QDrag, QImage, QPainter, QPainterPath, QPalette, QPen, QPixmap
from PySide6.QtWidgets import QApplication, QScrollBar, QSizePolicy, QToolButton, QWidget

from app import zoom

MARGIN = 12  # around the image at Fit; zoomed, the image fills the frame
VIEW_TIP = ("Drag the image out to copy it to another app. Zoomed in: drag to move around, Alt-drag "
            "(Option-drag) to drag the image out. Double-click: Fit ↔ 100%. ←/→ previous/next image, "
            "Space: Quick Look.")


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
    """Paints one QImage centred, fitted (up or down) or at a zoom scale, or a hint when there is none."""

    imageChanged = Signal(bool)  # a new image was set (True: a live preview)
    zoomChanged = Signal()  # the scale or the part in view changed (the compare view follows it)
    stepRequested = Signal(int)  # an arrow key: -1 the previous, +1 the next image of the history

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._image = QImage()
        self._is_preview = False
        self._placeholder = ""
        self._expected = QSize()  # the size of the image a run's previews lead to (see expect_size)
        self._fit = True
        self._scale = 1.0  # when not fitting
        self._centre = QPointF(0.5, 0.5)  # the image point at the view's centre, as fractions of the image
        self._drag_start: QPoint | None = None
        self._drag_mode: str | None = None  # "pan" or "export" while the left button is down
        self._last_pos = QPointF()
        self._updating_bars = False
        self.drag_mime: Callable[[], QMimeData | None] | None = None  # set by the window
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setToolTip(VIEW_TIP)
        self.setAttribute(Qt.WidgetAttribute.WA_AcceptTouchEvents, False)

        self.hbar = QScrollBar(Qt.Orientation.Horizontal, self)
        self.vbar = QScrollBar(Qt.Orientation.Vertical, self)
        for bar, name in ((self.hbar, "zoomHBar"), (self.vbar, "zoomVBar")):
            bar.setObjectName(name)
            bar.hide()
            bar.setCursor(Qt.CursorShape.ArrowCursor)
            bar.valueChanged.connect(self._on_bar)
        self.zoomButton = QToolButton(self)
        self.zoomButton.setObjectName("zoomButton")
        self.zoomButton.setAccessibleName("zoomButton")
        self.zoomButton.setAccessibleDescription("Zoom level of the image")
        self.zoomButton.setToolTip("Zoom level: click to switch between Fit (Ctrl+0) and Actual Size, 100% "
                                   "(Ctrl+1). Zoom with Ctrl+= / Ctrl+−, pinch or Ctrl+scroll.")
        self.zoomButton.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.zoomButton.setCursor(Qt.CursorShape.PointingHandCursor)
        # A small translucent pill over the image: readable on any picture, light or dark.
        self.zoomButton.setStyleSheet(
            "QToolButton#zoomButton { background: rgba(20, 20, 20, 150); color: white; border: none;"
            " border-radius: 9px; padding: 2px 9px; font-size: 11px; }"
            "QToolButton#zoomButton:hover { background: rgba(20, 20, 20, 200); }")
        self.zoomButton.clicked.connect(lambda: self.toggle_zoom())
        self.zoomButton.hide()

    # -- content -------------------------------------------------------------------------
    def image(self) -> QImage:
        return self._image

    def is_preview(self) -> bool:
        return self._is_preview

    def set_image(self, image: QImage, preview: bool = False) -> None:
        """Show `image`; the zoom stays as chosen (Fit fits each new image)."""
        self._image = image
        self._is_preview = preview
        self._changed(emit=False)
        self.imageChanged.emit(preview)

    def expect_size(self, size: QSize) -> None:
        """Previews from now on lead to an image of `size`: they are laid out at that size, so a
        zoomed view shows the same part of the image from the first preview to the result."""
        self._expected = QSize(size)

    def clear(self) -> None:
        self.set_image(QImage())

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(640, 640)

    # -- geometry ----------------------------------------------------------------------------
    def content_size(self) -> QSizeF:
        """The image's size in its own pixels (a preview counts as the image it leads to)."""
        if self._is_preview and self._expected.isValid() and not self._expected.isEmpty():
            return QSizeF(self._expected)
        return QSizeF(self._image.size())

    def _dpr(self) -> float:
        return self.devicePixelRatioF() or 1.0

    def _area(self, fit: bool | None = None) -> QRectF:
        margin = MARGIN if (self._fit if fit is None else fit) else 2
        return QRectF(self.rect()).adjusted(margin, margin, -margin, -margin)

    def fit_scale(self) -> float:
        size, area = self.content_size(), self._area(fit=True)
        if size.isEmpty() or area.isEmpty():
            return 1.0
        return min(area.width() / size.width(), area.height() / size.height()) * self._dpr()

    def scale(self) -> float:
        """Image pixels per screen pixel now (at Fit: whatever fits)."""
        return self.fit_scale() if self._fit else self._scale

    def is_fit(self) -> bool:
        return self._fit

    def _drawn_size(self) -> QSizeF:
        return self.content_size() * (self.scale() / self._dpr())

    def image_rect(self) -> QRectF:
        """Where the image is drawn: centred when it fits the view, else around the chosen centre."""
        if self._image.isNull():
            return QRectF()
        area, size = self._area(), self._drawn_size()
        return QRectF(_place(area.left(), area.width(), size.width(), self._centre.x()),
                      _place(area.top(), area.height(), size.height(), self._centre.y()), size.width(), size.height())

    def is_pannable(self) -> bool:
        """Whether the image is larger than the view (there is something to pan to)."""
        if self._image.isNull() or self._fit:
            return False
        area, size = self._area(), self._drawn_size()
        return size.width() > area.width() + 0.5 or size.height() > area.height() + 0.5

    # -- zoom and pan ------------------------------------------------------------------------
    def zoom_fit(self) -> None:
        self._fit, self._centre = True, QPointF(0.5, 0.5)
        self._changed()

    def zoom_actual(self, anchor: QPointF | None = None) -> None:
        self.set_scale(1.0, anchor)

    def zoom_in(self) -> None:
        self.set_scale(zoom.step_in(self.scale()))

    def zoom_out(self) -> None:
        self.set_scale(zoom.step_out(self.scale()))

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        self.set_scale(self.scale() * factor, anchor)

    def toggle_zoom(self, anchor: QPointF | None = None) -> None:
        """Fit ↔ Actual Size (the point under `anchor` stays put)."""
        self.zoom_actual(anchor) if self._fit else self.zoom_fit()

    def set_scale(self, scale: float, anchor: QPointF | None = None) -> None:
        """Zoom to `scale`, keeping the image point under `anchor` (default: the centre) in place."""
        before = self.image_rect()
        anchor = QPointF(anchor) if anchor is not None else self._area().center()
        self._fit, self._scale = False, zoom.clamp(scale)
        if not before.isEmpty():
            fx = (anchor.x() - before.left()) / before.width()
            fy = (anchor.y() - before.top()) / before.height()
            area, size = self._area(), self._drawn_size()
            self._centre = QPointF((area.center().x() - anchor.x()) / size.width() + fx,
                                   (area.center().y() - anchor.y()) / size.height() + fy)
        self._changed()

    def pan_by(self, dx: float, dy: float) -> None:
        """Move the image by (dx, dy) screen pixels (as a drag would)."""
        size = self._drawn_size()
        if size.isEmpty():
            return
        self._centre = QPointF(self._centre.x() - dx / size.width(), self._centre.y() - dy / size.height())
        self._changed()

    def view_state(self) -> tuple[bool, float, QPointF]:
        """(fit, scale, centre): what another view needs to show the same zoom and part."""
        return self._fit, self._scale, QPointF(self._centre)

    def set_view_state(self, state: tuple[bool, float, QPointF]) -> None:
        fit, scale, centre = state
        if (fit, scale, centre) != (self._fit, self._scale, self._centre):
            self._fit, self._scale, self._centre = fit, scale, QPointF(centre)
            self._changed()

    def _changed(self, emit: bool = True) -> None:
        """After the image, the zoom, the centre or the size changed: keep the image covering the
        view, then the scroll bars, the zoom pill, the cursor and the picture follow."""
        area, size = self._area(), self._drawn_size()
        self._centre = QPointF(_clamp_centre(self._centre.x(), area.width(), size.width()),
                               _clamp_centre(self._centre.y(), area.height(), size.height()))
        self._update_bars(area, size)
        has_image = not self._image.isNull()
        self.zoomButton.setText(("Fit " if self._fit else "") + zoom.percent(self.scale()))
        self.zoomButton.adjustSize()
        beside_bar = self.vbar.width() + 4 if not self.vbar.isHidden() else 0
        self.zoomButton.move(self.width() - self.zoomButton.width() - 10 - beside_bar, 10)
        self.zoomButton.setVisible(has_image)
        if self._drag_mode != "pan":
            self.setCursor(Qt.CursorShape.OpenHandCursor if self.is_pannable() else Qt.CursorShape.ArrowCursor)
        self.update()
        if emit:
            self.zoomChanged.emit()

    def _update_bars(self, area: QRectF, size: QSizeF) -> None:
        self._updating_bars = True
        try:
            extent = self.style().pixelMetric(self.style().PixelMetric.PM_ScrollBarExtent)
            for bar, length, span, centre in ((self.hbar, size.width(), area.width(), self._centre.x()),
                                              (self.vbar, size.height(), area.height(), self._centre.y())):
                if self._fit or self._image.isNull() or length <= span + 0.5:
                    bar.hide()
                    continue
                bar.setRange(0, int(length - span))
                bar.setPageStep(int(span))
                bar.setSingleStep(24)
                bar.setValue(int(round(centre * length - span / 2)))
                bar.show()
            w, h = self.width(), self.height()
            self.hbar.setGeometry(6, h - extent - 3, w - 12 - (extent if not self.vbar.isHidden() else 0), extent)
            self.vbar.setGeometry(w - extent - 3, 6, extent, h - 12 - (extent if not self.hbar.isHidden() else 0))
        finally:
            self._updating_bars = False

    def _on_bar(self, _value: int) -> None:
        if self._updating_bars:
            return
        area, size = self._area(), self._drawn_size()
        x, y = self._centre.x(), self._centre.y()
        if not self.hbar.isHidden():
            x = (self.hbar.value() + area.width() / 2) / size.width()
        if not self.vbar.isHidden():
            y = (self.vbar.value() + area.height() / 2) / size.height()
        self._centre = QPointF(x, y)
        self._changed()

    # -- painting --------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 (Qt's name)
        painter = QPainter(self)
        palette = paint_frame(painter, self)
        if self._image.isNull():
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            painter.drawText(self.rect().adjusted(24, 24, -24, -24),
                             Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self._placeholder)
            return
        # Smooth when shrinking or slightly enlarging; magnified, each pixel shows as a square.
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self.scale() < 2.0)
        if not self._fit:
            clip = QPainterPath()
            clip.addRoundedRect(QRectF(self.rect()).adjusted(1, 1, -1, -1), 7, 7)
            painter.setClipPath(clip)
        target = self.image_rect()
        visible = target.intersected(QRectF(self.rect()))
        if visible.isEmpty():
            return
        # Only the part in view is scaled: a 16× zoom never transforms the whole image.
        sx, sy = self._image.width() / target.width(), self._image.height() / target.height()
        source = QRectF((visible.left() - target.left()) * sx, (visible.top() - target.top()) * sy,
                        visible.width() * sx, visible.height() * sy)
        painter.drawImage(visible, self._image, source)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._changed(emit=False)

    # -- zoom gestures, pan, drag out --------------------------------------------------------
    def event(self, event) -> bool:
        if event.type() == QEvent.Type.NativeGesture and not self._image.isNull():
            kind = event.gestureType()
            if kind == Qt.NativeGestureType.ZoomNativeGesture:  # pinch: value() is the change, e.g. 0.05
                self.zoom_by(1.0 + event.value(), event.position())
                return True
            if kind == Qt.NativeGestureType.SmartZoomNativeGesture:  # two-finger double tap
                self.toggle_zoom(event.position())
                return True
        return super().event(event)

    def wheelEvent(self, event) -> None:  # noqa: N802
        if self._image.isNull():
            return super().wheelEvent(event)
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom_by(zoom.wheel_factor(event.angleDelta().y()), event.position())
        elif self.is_pannable():
            delta = event.pixelDelta() if not event.pixelDelta().isNull() else event.angleDelta() / 2
            self.pan_by(delta.x(), delta.y())
        else:
            return super().wheelEvent(event)
        event.accept()

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and not self._image.isNull():
            self.toggle_zoom(event.position())
            return
        super().mouseDoubleClickEvent(event)

    def mousePressEvent(self, event) -> None:  # noqa: N802
        if event.button() == Qt.MouseButton.LeftButton and self.image_rect().contains(event.position()):
            alt = bool(event.modifiers() & Qt.KeyboardModifier.AltModifier)
            self._drag_mode = "pan" if self.is_pannable() and not alt else "export"
            self._drag_start = event.position().toPoint()
            self._last_pos = event.position()
            if self._drag_mode == "pan":
                self.setCursor(Qt.CursorShape.ClosedHandCursor)
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        if self._drag_mode == "pan" and event.buttons() & Qt.MouseButton.LeftButton:
            delta = event.position() - self._last_pos
            self._last_pos = event.position()
            self.pan_by(delta.x(), delta.y())
        elif (
            self._drag_mode == "export" and self._drag_start is not None
            and event.buttons() & Qt.MouseButton.LeftButton
            and (event.position().toPoint() - self._drag_start).manhattanLength()
            >= QApplication.startDragDistance()
        ):
            self._drag_start = self._drag_mode = None
            self.start_drag()
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        self._drag_start = self._drag_mode = None
        self._changed(emit=False)  # the cursor back to an open hand
        super().mouseReleaseEvent(event)

    def start_drag(self) -> None:
        """Drag the image out (the file and the pixels, see MainWindow.image_mime)."""
        mime = self.drag_mime() if self.drag_mime else None
        if mime is None:
            return
        drag = QDrag(self)
        drag.setMimeData(mime)
        thumb = self._image.scaled(128, 128, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)
        drag.setPixmap(QPixmap.fromImage(thumb))
        drag.exec(Qt.DropAction.CopyAction)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        step = {Qt.Key.Key_Left: -1, Qt.Key.Key_Up: -1, Qt.Key.Key_Right: 1, Qt.Key.Key_Down: 1}.get(event.key())
        if step is not None and not event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier:
            self.stepRequested.emit(step)
            event.accept()
            return
        super().keyPressEvent(event)


def _place(start: float, span: float, length: float, centre: float) -> float:
    """Where an image side of `length` starts in a view side of `span`: centred when it fits, else
    with the image point at fraction `centre` in the middle."""
    if length <= span:
        return start + (span - length) / 2
    return start + span / 2 - centre * length


def _clamp_centre(centre: float, span: float, length: float) -> float:
    """A centre that keeps the view covered by the image (no empty band past its edge)."""
    if length <= span or length <= 0:
        return 0.5
    half = span / 2 / length
    return min(1.0 - half, max(half, centre))
