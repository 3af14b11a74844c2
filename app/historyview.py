"""The history list: a model over HistoryStore search results and a delegate that draws each
entry as thumbnail + prompt + a line of settings, in palette colours."""

from __future__ import annotations

import time
from typing import Any, Callable

from PySide6.QtCore import QAbstractListModel, QModelIndex, QPersistentModelIndex, QRect, QSize, Qt
from PySide6.QtGui import QFont, QFontMetrics, QIcon, QImage, QPainter, QPalette, QPen, QPixmap
from PySide6.QtWidgets import (
    QLabel, QLineEdit, QListView, QPushButton, QStyle, QStyledItemDelegate, QStyleOptionViewItem,
    QVBoxLayout, QWidget,
)

from app.controls import name_widget
from app.flowlayout import FlowLayout
from app.history import HistoryEntry
from app.inputs import input_text
from app.loras import lora_text
from app.models import display_name

EntryRole = Qt.ItemDataRole.UserRole + 1
InputPreviewRole = Qt.ItemDataRole.UserRole + 2  # the input image's preview (QPixmap), for the badge
THUMB = 64  # logical pixels
BADGE = 26  # the input image's badge, in the thumbnail's corner
PADDING = 8


def summary(entry: HistoryEntry) -> str:
    """One line of settings: 'schnell · 1024×1024 · 4 steps · seed 42 · LoRA style 0.8 · img2img 0.6 from ab12cd…'."""
    parts = settings_parts(entry)
    parts.insert(4 if entry.request.guidance is not None else 3, f"seed {entry.request.seed}")
    return " · ".join(parts)


def settings_parts(entry: HistoryEntry) -> list[str]:
    """The settings of `entry` but its seed: model, size, steps, guidance, LoRAs, input."""
    p = entry.request
    parts = [entry.model_name or display_name(entry.choice.source), f"{p.width}×{p.height}", f"{p.steps} steps"]
    if p.guidance is not None:
        parts.append(f"guidance {p.guidance:g}")
    if p.loras:
        parts.append(f"LoRA {lora_text(p.loras)}")
    if (started_from := input_text(p)) is not None:
        parts.append(started_from)
    return parts


def info_lines(entry: HistoryEntry, metrics: QFontMetrics, width: int,
               now: float | None = None) -> list[tuple[str, str]]:
    """A row's settings as lines of (left, right) text, bottom last: one line ("settings · ",
    "seed 42 · 3 min ago") where the seed and the age fit whole beside some settings; in a
    narrower row the settings get a line of their own, and narrower still the seed and the age
    each get one (the settings are in the tooltip and the caption), so neither is ever cut."""
    tail = f"seed {entry.request.seed} · {age(entry.created_at, now)}"
    room = width - metrics.horizontalAdvance(tail) - metrics.horizontalAdvance(" · ")
    if room >= metrics.horizontalAdvance("1024×1024…"):  # seed and age whole, the settings elided before them
        head = metrics.elidedText(" · ".join(settings_parts(entry)), Qt.TextElideMode.ElideRight, room)
        return [(f"{head} · ", tail)]
    settings = metrics.elidedText(" · ".join(settings_parts(entry)), Qt.TextElideMode.ElideRight, width)
    if metrics.horizontalAdvance(tail) <= width:
        return [(settings, ""), ("", tail)]
    return [(f"seed {entry.request.seed}", ""), (age(entry.created_at, now), "")]


def small_font(font: QFont) -> QFont:
    """The rows' secondary text (settings, seed, age): smaller than the prompt."""
    small = QFont(font)
    small.setPointSizeF(max(7.0, small.pointSizeF() * 0.85))
    return small


def narrow_text_width(metrics: QFontMetrics) -> int:
    """The text width a row needs for its largest seed and longest age on lines of their own."""
    from app.params import SEED_MAX

    return max(metrics.horizontalAdvance(text) for text in (f"seed {SEED_MAX}", "59 min ago", "28 Sep 2026"))


def minimum_panel_width(panel: QWidget) -> int:
    """The history panel's narrowest: thumbnail, padding, list frame and scroll bar, margins,
    and room for a row's seed and age (see info_lines)."""
    small = small_font(panel.historyList.font())
    margins = panel.layout().contentsMargins()
    chrome = 2 * panel.historyList.frameWidth() + panel.historyList.verticalScrollBar().sizeHint().width()
    return margins.left() + margins.right() + chrome + THUMB + 3 * PADDING + narrow_text_width(QFontMetrics(small))


def age(timestamp: float, now: float | None = None) -> str:
    seconds = max(0, (now or time.time()) - timestamp)
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{int(seconds // 60)} min ago"
    if seconds < 86400:
        return f"{int(seconds // 3600)} h ago"
    return time.strftime("%d %b %Y", time.localtime(timestamp))


class HistoryModel(QAbstractListModel):
    def __init__(self, thumbnail_loader: Callable[[int], bytes | None] | None = None, parent=None,
                 input_loader: Callable[[str], QImage] | None = None) -> None:
        super().__init__(parent)
        self._load_thumbnail = thumbnail_loader  # fetched when a row is first painted
        self._load_input = input_loader  # an input image's preview by its hash
        self._inputs: dict[str, QPixmap] = {}  # by fingerprint: many entries share one input
        self._entries: list[HistoryEntry] = []
        self._thumbs: dict[int, QPixmap] = {}  # decoded lazily, only for rows that get painted

    def set_entries(self, entries: list[HistoryEntry]) -> None:
        self.beginResetModel()
        self._entries = entries
        live = {e.id for e in entries}
        self._thumbs = {k: v for k, v in self._thumbs.items() if k in live}
        self.endResetModel()

    def entries(self) -> list[HistoryEntry]:
        return list(self._entries)

    def entry(self, row: int) -> HistoryEntry | None:
        return self._entries[row] if 0 <= row < len(self._entries) else None

    def row_of(self, entry_id: int) -> int:
        for row, entry in enumerate(self._entries):
            if entry.id == entry_id:
                return row
        return -1

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802
        return 0 if parent.isValid() else len(self._entries)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        entry = self.entry(index.row()) if index.isValid() else None
        if entry is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return entry.prompt
        if role == Qt.ItemDataRole.AccessibleTextRole:
            return f"{entry.prompt}, {summary(entry)}"
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{entry.prompt}\n{summary(entry)}\n{age(entry.created_at)}"
        if role == Qt.ItemDataRole.DecorationRole:
            return self._thumbnail(entry)
        if role == EntryRole:
            return entry
        if role == InputPreviewRole:
            return self._input_preview(entry)
        return None

    def _input_preview(self, entry: HistoryEntry) -> QPixmap | None:
        ref = entry.request.image
        if ref is None:
            return None
        pixmap = self._inputs.get(ref.fingerprint)
        if pixmap is None:
            image = QImage()
            if self._load_input is not None:
                try:
                    image = self._load_input(ref.fingerprint)
                except Exception:  # decoration only
                    image = QImage()
            pixmap = QPixmap.fromImage(image) if not image.isNull() else QPixmap()
            self._inputs[ref.fingerprint] = pixmap
        return pixmap

    def _thumbnail(self, entry: HistoryEntry) -> QPixmap:
        pixmap = self._thumbs.get(entry.id)
        if pixmap is None:
            pixmap = QPixmap()
            data = entry.thumbnail
            if data is None and self._load_thumbnail is not None:
                try:
                    data = self._load_thumbnail(entry.id)
                except Exception:  # a thumbnail is decoration; the row still shows
                    data = None
            if data:
                pixmap.loadFromData(data, "PNG")
            self._thumbs[entry.id] = pixmap
        return pixmap


class HistoryDelegate(QStyledItemDelegate):
    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex) -> QSize:  # noqa: N802
        # Narrow: the list stretches rows to its width anyway, and a wider hint than a narrow
        # panel's list would scroll it sideways.
        return QSize(THUMB + 3 * PADDING + 40, THUMB + 2 * PADDING)

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex) -> None:
        entry: HistoryEntry | None = index.data(EntryRole)
        if entry is None:
            return super().paint(painter, option, index)
        painter.save()
        # Let the style draw selection/hover backgrounds so it matches the platform.
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text, opt.icon = "", QIcon()  # we draw those ourselves
        # No focus frame around the (empty) text cell: it showed as a stray box in the selected row,
        # which the selection colour already marks.
        opt.state = opt.state & ~QStyle.StateFlag.State_HasFocus
        style = opt.widget.style() if opt.widget else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, opt.widget)

        rect = option.rect.adjusted(PADDING, PADDING, -PADDING, -PADDING)
        thumb_rect = QRect(rect.left(), rect.top(), THUMB, THUMB)
        pixmap: QPixmap = index.data(Qt.ItemDataRole.DecorationRole)
        if pixmap is not None and not pixmap.isNull():
            scaled = pixmap.scaled(thumb_rect.size() * pixmap.devicePixelRatio(),
                                   Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            target = QRect(0, 0, scaled.width(), scaled.height())
            target.moveCenter(thumb_rect.center())
            painter.drawPixmap(target, scaled)
        else:
            painter.fillRect(thumb_rect, option.palette.color(QPalette.ColorRole.Mid))
        if entry.request.image is not None:
            _draw_badge(painter, index.data(InputPreviewRole), thumb_rect, option.palette)

        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        group = QPalette.ColorGroup.Active if option.state & QStyle.StateFlag.State_Active else QPalette.ColorGroup.Inactive
        text_role = QPalette.ColorRole.HighlightedText if selected else QPalette.ColorRole.Text
        text_rect = rect.adjusted(THUMB + PADDING, 0, 0, 0)
        metrics = QFontMetrics(option.font)
        line = metrics.lineSpacing()

        # Settings, seed and age in a smaller, secondary colour, at the bottom (one line, or
        # two in a narrow row); the prompt above them gets what is left (two lines, or one).
        small = small_font(option.font)
        small_metrics = QFontMetrics(small)
        lines = info_lines(entry, small_metrics, text_rect.width())

        # Prompt: up to two lines, elided at the end.
        painter.setPen(option.palette.color(group, text_role))
        prompt = " ".join(entry.prompt.split()) or "(empty prompt)"
        if len(lines) > 1:  # the settings take two lines: the prompt gets one
            first, rest = metrics.elidedText(prompt, Qt.TextElideMode.ElideRight, text_rect.width()), ""
        else:
            first, rest = _split_line(prompt, metrics, text_rect.width())
        painter.drawText(QRect(text_rect.left(), text_rect.top(), text_rect.width(), line),
                         Qt.AlignmentFlag.AlignLeft, first)
        if rest:
            second = metrics.elidedText(rest, Qt.TextElideMode.ElideRight, text_rect.width())
            painter.drawText(QRect(text_rect.left(), text_rect.top() + line, text_rect.width(), line),
                             Qt.AlignmentFlag.AlignLeft, second)

        painter.setFont(small)
        secondary = option.palette.color(group, text_role if selected else QPalette.ColorRole.PlaceholderText)
        painter.setPen(secondary)
        small_line = small_metrics.lineSpacing()
        for i, (head, tail) in enumerate(lines):
            bottom = text_rect.bottom() - (len(lines) - 1 - i) * small_line
            info_rect = QRect(text_rect.left(), bottom - small_line + 1, text_rect.width(), small_line)
            if head:
                painter.drawText(info_rect, Qt.AlignmentFlag.AlignLeft, head)
            if tail:
                painter.drawText(info_rect, Qt.AlignmentFlag.AlignRight, tail)
        painter.restore()


def _draw_badge(painter: QPainter, pixmap: QPixmap | None, thumb: QRect, palette: QPalette) -> None:
    """The input image, small, in the thumbnail's bottom-right corner (framed so it reads as a
    badge on any image); a plain frame when the input's preview is gone."""
    badge = QRect(thumb.right() - BADGE + 3, thumb.bottom() - BADGE + 3, BADGE, BADGE)
    painter.fillRect(badge.adjusted(-1, -1, 1, 1), palette.color(QPalette.ColorRole.Base))
    if pixmap is not None and not pixmap.isNull():
        scaled = pixmap.scaled(badge.size() * pixmap.devicePixelRatio(), Qt.AspectRatioMode.KeepAspectRatioByExpanding,
                               Qt.TransformationMode.SmoothTransformation)
        source = QRect(0, 0, badge.width(), badge.height())
        source.moveCenter(scaled.rect().center())
        painter.drawPixmap(badge, scaled, source)
    else:
        painter.fillRect(badge, palette.color(QPalette.ColorRole.Mid))
    painter.setPen(QPen(palette.color(QPalette.ColorRole.Base), 1.5))
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.drawRect(badge.adjusted(-1, -1, 1, 1))


def _split_line(text: str, metrics: QFontMetrics, width: int) -> tuple[str, str]:
    """The longest word-wrapped first line that fits in `width`, and the remainder."""
    if metrics.horizontalAdvance(text) <= width:
        return text, ""
    words = text.split(" ")
    line = ""
    for i, word in enumerate(words):
        candidate = f"{line} {word}" if line else word
        if metrics.horizontalAdvance(candidate) > width:
            if not line:  # one very long word
                return metrics.elidedText(word, Qt.TextElideMode.ElideRight, width), " ".join(words[i + 1:])
            return line, " ".join(words[i:])
        line = candidate
    return line, ""


class HistoryPanel(QWidget):
    """Search field, the list, a count and the entry actions; the window supplies the behaviour."""

    def __init__(self, thumbnail_loader: Callable[[int], bytes | None],
                 input_loader: Callable[[str], QImage] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.historySearch = name_widget(QLineEdit(), "historySearch", "Search the history by prompt or seed")
        self.historySearch.setPlaceholderText("Search prompts")
        self.historySearch.setClearButtonEnabled(True)
        self.historyModel = HistoryModel(thumbnail_loader, self, input_loader)
        self.historyList = name_widget(QListView(), "historyList", "Generated images, newest first")
        self.historyList.setModel(self.historyModel)
        self.historyList.setItemDelegate(HistoryDelegate(self.historyList))
        self.historyList.setUniformItemSizes(True)
        self.historyList.setSelectionMode(QListView.SelectionMode.SingleSelection)
        self.historyList.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.historyList.setVerticalScrollMode(QListView.ScrollMode.ScrollPerPixel)
        self.historyList.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)  # rows elide instead
        self.historyCountLabel = QLabel()
        self.historyCountLabel.setObjectName("historyCountLabel")
        self.historyCountLabel.setForegroundRole(self.palette().ColorRole.PlaceholderText)
        self.rerunButton = name_widget(QPushButton("Re-run"), "rerunButton", None,
                                       "Generate again with this entry's prompt, settings and seed")
        self.copyPromptButton = name_widget(QPushButton("Copy Prompt"), "copyPromptButton", None,
                                             "Copy this entry's prompt to the clipboard")
        self.deleteButton = name_widget(QPushButton("Delete…"), "deleteButton", None,
                                        "Delete this entry and move its image to the Trash")
        actions = FlowLayout()  # wraps in a narrow panel rather than cutting buttons
        for button in (self.rerunButton, self.copyPromptButton, self.deleteButton):
            actions.addWidget(button)
        # Selecting an entry only shows it; these put its prompt, seed or settings in the controls.
        self.usePromptButton = name_widget(QPushButton("Use Prompt"), "usePromptButton", None,
                                           "Replace the prompt with this entry's (Undo brings yours back)")
        self.useSeedButton = name_widget(QPushButton("Use Seed"), "useSeedButton", None,
                                         "Lock the seed to this entry's")
        self.useSettingsButton = name_widget(QPushButton("Use Settings"), "useSettingsButton", None,
                                             "Put all of this entry's settings in the controls (also: double-click "
                                             "or Enter); a different model is asked for first")
        uses = FlowLayout()
        for button in (self.usePromptButton, self.useSeedButton, self.useSettingsButton):
            uses.addWidget(button)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.setSpacing(8)
        layout.addWidget(self.historySearch)
        layout.addWidget(self.historyList, 1)
        layout.addWidget(self.historyCountLabel)
        layout.addLayout(uses)
        layout.addLayout(actions)

    def show_count(self, shown: int, total: int, searching: bool) -> None:
        self.historyCountLabel.setText(f"{shown} of {total} images" if searching else
                                       f"{total} image{'s' if total != 1 else ''}")
