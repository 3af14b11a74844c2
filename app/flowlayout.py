"""A layout that puts its widgets in a row and wraps them onto more rows when the row is too
narrow (Qt's flow layout example, kept small), so a narrow window never cuts a button."""

from __future__ import annotations

from PySide6.QtCore import QMargins, QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QWidget, QWidgetItem


class FlowLayout(QLayout):
    """Items left to right at their size hints; `stretch_after` (an index) leaves the free space
    of a row after that item, so the items after it sit at the right edge as in an HBox with a
    stretch."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 6) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._spacing = spacing
        self.stretch_after: int | None = None
        self.setContentsMargins(QMargins(0, 0, 0, 0))

    # -- QLayout's item list --------------------------------------------------------------
    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802
        self._items.append(item)

    def addWidget(self, widget: QWidget) -> None:  # noqa: N802
        self.addChildWidget(widget)
        self.addItem(QWidgetItem(widget))

    def addStretch(self, stretch: int = 1) -> None:  # noqa: N802
        """The free space of each row goes here (after the items added so far)."""
        self.stretch_after = len(self._items) - 1

    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        return self._items.pop(index) if 0 <= index < len(self._items) else None

    # -- sizes ------------------------------------------------------------------------------
    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return self._arrange(QRect(0, 0, width, 0), move=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802
        super().setGeometry(rect)
        self._arrange(rect, move=True)

    def sizeHint(self) -> QSize:  # noqa: N802
        # Everything on one row.
        visible = self._visible()
        width = sum(i.sizeHint().width() for _, i in visible) + self._spacing * max(0, len(visible) - 1)
        height = max((i.sizeHint().height() for _, i in visible), default=0)
        m = self.contentsMargins()
        return QSize(width + m.left() + m.right(), height + m.top() + m.bottom())

    def minimumSize(self) -> QSize:  # noqa: N802
        # The widest item alone on a row.
        size = QSize()
        for _, item in self._visible():
            size = size.expandedTo(item.minimumSize().expandedTo(item.sizeHint()))
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    def _visible(self) -> list[tuple[int, QLayoutItem]]:
        return [(n, i) for n, i in enumerate(self._items) if not (i.widget() and i.widget().isHidden())]

    def _arrange(self, rect: QRect, move: bool) -> int:
        """Lay the items out in rows within `rect` (if `move`); the height they take."""
        m = self.contentsMargins()
        area = rect.adjusted(m.left(), m.top(), -m.right(), -m.bottom())
        rows: list[list[tuple[int, QLayoutItem]]] = [[]]
        x = 0
        for index, item in self._visible():
            width = item.sizeHint().width()
            if rows[-1] and x + width > area.width():
                rows.append([])
                x = 0
            rows[-1].append((index, item))
            x += width + self._spacing
        y = area.y()
        for row in rows:
            height = max((i.sizeHint().height() for _, i in row), default=0)
            used = sum(i.sizeHint().width() for _, i in row) + self._spacing * max(0, len(row) - 1)
            x = area.x()
            for index, item in row:
                if move:
                    size = item.sizeHint()
                    item.setGeometry(QRect(QPoint(x, y + (height - size.height()) // 2), size))
                x += item.sizeHint().width() + self._spacing
                if self.stretch_after is not None and index == self.stretch_after:
                    x += max(0, area.width() - used)
            y += height + self._spacing
        return y - self._spacing - area.y() + m.top() + m.bottom() if rows[0] else m.top() + m.bottom()


__all__ = ["FlowLayout"]
