"""A batch's images (or several history entries) in one grid, each with its seed under it; a click
(or Return on the highlighted one) shows that image alone."""

from __future__ import annotations

import math
from dataclasses import dataclass

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QFontMetrics, QImage, QPainter, QPainterPath, QPalette, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from app.imageview import paint_frame
from app.params import GenerationParams

GAP = 12  # between tiles and around them
MAX_TILE_PIXELS = 768  # a tile never needs more than this: images are read scaled (see load_scaled)


@dataclass(frozen=True)
class GridItem:
    image: QImage
    params: GenerationParams | None = None
    entry_id: int | None = None  # its history entry, when it has one
    full: QImage | None = None  # the image at full size when `image` is a smaller copy and there is no entry

    @property
    def caption(self) -> str:
        return f"seed {self.params.seed}" if self.params is not None and self.params.seed is not None else "no seed"


def load_scaled(path, longest: int = MAX_TILE_PIXELS) -> QImage:
    """An image file read at most `longest` pixels on its long side (cheap for big images)."""
    from PySide6.QtGui import QImageReader

    reader = QImageReader(str(path))
    size = reader.size()
    if size.isValid() and max(size.width(), size.height()) > longest:
        reader.setScaledSize(size.scaled(QSize(longest, longest), Qt.AspectRatioMode.KeepAspectRatio))
    return reader.read()


def grid_shape(count: int, width: float, height: float, aspect: float, caption: float) -> tuple[int, int]:
    """(columns, rows) that make the tiles largest in a width x height area; `aspect` is the
    images' width / height, `caption` the height each row adds under its images."""
    best, shape = -1.0, (1, max(1, count))
    for columns in range(1, max(1, count) + 1):
        rows = math.ceil(count / columns)
        cell_w = (width - GAP * (columns + 1)) / columns
        cell_h = (height - GAP * (rows + 1)) / rows - caption
        side = min(cell_w, cell_h * aspect)  # the tile's width
        if side > best + 0.5:
            best, shape = side, (columns, rows)
    return shape


class BatchGrid(QWidget):
    """Paints the tiles itself: one widget, no per-tile widgets, cheap to fill and to click."""

    picked = Signal(int)  # the index of the image clicked (or chosen with Return)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._items: list[GridItem] = []
        self._shape_cache: tuple[tuple, tuple[int, int]] | None = None
        self._hover = -1
        self._current = 0
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(200, 200)
        self.setToolTip("Click an image to see it alone; Grid brings this view back.\n"
                        "Arrow keys move, Return opens, Space shows it large (Quick Look).")

    def set_items(self, items: list[GridItem], current: int = 0) -> None:
        """Show `items`; `current` is the highlighted one (the image the window's actions act on)."""
        self._items = list(items)
        self._shape_cache = None
        self._current = min(max(0, current), max(0, len(self._items) - 1))
        self._hover = -1
        self.update()

    def title(self) -> str:
        """The line over the tiles: '4 images · seeds 7–10 · click one to see it alone'."""
        seeds = [item.params.seed for item in self._items if item.params is not None and item.params.seed is not None]
        if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[0] + len(seeds))):
            listed = f"{seeds[0]}–{seeds[-1]}"
        else:
            listed = ", ".join(str(seed) for seed in seeds[:8]) + (" …" if len(seeds) > 8 else "")
        return f"{len(self._items)} images · seeds {listed} · click one to see it alone"

    def items(self) -> list[GridItem]:
        return list(self._items)

    def current(self) -> int:
        return self._current if self._items else -1

    def sizeHint(self) -> QSize:
        return QSize(640, 640)

    # -- layout ------------------------------------------------------------------------------
    def _caption_height(self) -> float:
        return QFontMetrics(self.font()).lineSpacing() + 4

    def _header_height(self) -> float:
        return QFontMetrics(self.font()).lineSpacing() + GAP / 2

    def _shape(self) -> tuple[int, int]:
        """(columns, rows): worked out once per set of images, size and font (every tile's
        rectangle, in each paint and mouse move, asks)."""
        key = (self.width(), self.height(), self.font().key())  # set_items clears it
        if self._shape_cache is None or self._shape_cache[0] != key:
            first = next((i.image for i in self._items if not i.image.isNull()), QImage())
            aspect = first.width() / first.height() if not first.isNull() and first.height() else 1.0
            shape = grid_shape(len(self._items), self.width(), self.height() - self._header_height(), aspect,
                               self._caption_height())
            self._shape_cache = (key, shape)
        return self._shape_cache[1]

    def tile_rect(self, index: int) -> QRectF:
        """The cell of image `index` (the image and its caption under it)."""
        columns, rows = self._shape()
        cell_w = (self.width() - GAP * (columns + 1)) / columns
        header = self._header_height()
        cell_h = (self.height() - header - GAP * (rows + 1)) / rows
        row, column = divmod(index, columns)
        # The last row's tiles are centred under the others.
        in_row = min(columns, len(self._items) - row * columns)
        offset = (columns - in_row) * (cell_w + GAP) / 2
        return QRectF(GAP + offset + column * (cell_w + GAP), header + GAP + row * (cell_h + GAP), cell_w, cell_h)

    def image_rect(self, index: int) -> QRectF:
        cell = self.tile_rect(index)
        box = cell.adjusted(0, 0, 0, -self._caption_height())
        image = self._items[index].image
        if image.isNull() or box.isEmpty():
            return box
        size = image.size().toSizeF().scaled(box.size(), Qt.AspectRatioMode.KeepAspectRatio)
        return QRectF(QPointF(box.center().x() - size.width() / 2, box.center().y() - size.height() / 2), size)

    def index_at(self, pos: QPointF) -> int:
        return next((i for i in range(len(self._items)) if self.tile_rect(i).contains(pos)), -1)

    # -- painting ----------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802
        painter = QPainter(self)
        palette = paint_frame(painter, self)
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        caption_h = self._caption_height()
        if self._items:
            painter.setPen(palette.color(QPalette.ColorRole.PlaceholderText))
            header = QRectF(GAP, GAP / 2, self.width() - 2 * GAP, self._header_height())
            text = QFontMetrics(self.font()).elidedText(self.title(), Qt.TextElideMode.ElideRight, int(header.width()))
            painter.drawText(header, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignVCenter, text)
        for i, item in enumerate(self._items):
            rect = self.image_rect(i)
            path = QPainterPath()
            path.addRoundedRect(rect, 6, 6)
            painter.save()
            painter.setClipPath(path)
            if item.image.isNull():
                painter.fillRect(rect, palette.color(QPalette.ColorRole.Mid))
            else:
                painter.drawImage(rect, item.image)
            painter.restore()
            # A ring round the image the window's caption and actions are about (bold while the
            # grid has the keys), a lighter one under the pointer.
            highlight = palette.color(QPalette.ColorRole.Highlight)
            if i == self._current or i == self._hover:
                if i != self._current:
                    highlight.setAlpha(140)
                painter.setPen(QPen(highlight, 3 if i == self._current and self.hasFocus() else 2))
                painter.setBrush(Qt.BrushStyle.NoBrush)
                painter.drawRoundedRect(rect.adjusted(-3, -3, 3, 3), 8, 8)
            cell = self.tile_rect(i)
            painter.setPen(palette.color(QPalette.ColorRole.Text if i == self._hover else
                                         QPalette.ColorRole.PlaceholderText))
            text_rect = QRectF(cell.left(), rect.bottom() + 2, cell.width(), caption_h)
            text = QFontMetrics(self.font()).elidedText(item.caption, Qt.TextElideMode.ElideRight, int(cell.width()))
            painter.drawText(text_rect, Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop, text)

    # -- mouse and keys ----------------------------------------------------------------------
    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        hover = self.index_at(event.position())
        if hover != self._hover:
            self._hover = hover
            self.setCursor(Qt.CursorShape.PointingHandCursor if hover >= 0 else Qt.CursorShape.ArrowCursor)
            self.update()
        super().mouseMoveEvent(event)

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._hover = -1
        self.update()
        super().leaveEvent(event)

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        index = self.index_at(event.position())
        if event.button() == Qt.MouseButton.LeftButton and index >= 0:
            self._current = index
            self.picked.emit(index)
            return
        super().mouseReleaseEvent(event)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if not self._items:
            return super().keyPressEvent(event)
        columns, _ = self._shape()
        moves = {Qt.Key.Key_Left: -1, Qt.Key.Key_Right: 1, Qt.Key.Key_Up: -columns, Qt.Key.Key_Down: columns}
        if event.key() in moves:
            self._current = min(len(self._items) - 1, max(0, self._current + moves[event.key()]))
            self.update()
        elif event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.picked.emit(self._current)
        else:
            return super().keyPressEvent(event)
        event.accept()

    def focusInEvent(self, event) -> None:  # noqa: N802
        self.update()
        super().focusInEvent(event)

    def focusOutEvent(self, event) -> None:  # noqa: N802
        self.update()
        super().focusOutEvent(event)
