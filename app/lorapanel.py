"""The LoRA section of the controls: the active LoRAs (`loraList`), each with an enable switch, a
scale (slider and typed value, -2..2 in steps of 0.05) and a remove button; Add (`addLoraButton`),
the library folder's files (`loraLibraryCombo`) and a button that opens that folder.

Widgets only: the window's LoRA controller reads files, opens dialogs and applies nothing itself
(the worker does, at the next generation). `choices()` is what the next image uses.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QPushButton, QSlider,
    QStyle, QToolButton, QVBoxLayout, QWidget,
)

from mlx_flux.lora_info import LoraInfo

from app.loras import describe, short_name
from app.params import LoraChoice
from app.widgets import link_slider_spin, name_widget

SCALE_MIN, SCALE_MAX, SCALE_STEP = -2.0, 2.0, 0.05
SLIDER_UNITS = round(1 / SCALE_STEP)  # the slider counts steps of 0.05
NAME_WIDTH = 170  # pixels of a LoRA's name in its row, before it is elided
LIBRARY_PROMPT = "Add from library…"
EMPTY_HINT = "No LoRAs. Add a .safetensors file, drop one on the window, or pick one from the library."


class LoraRow(QWidget):
    """One active LoRA: [x] name · scale slider · scale value · remove."""

    changed = Signal()
    removeRequested = Signal()

    def __init__(self, path: str, info: LoraInfo | None, scale: float = 1.0, enabled: bool = True,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("loraRow")
        self.path = path
        self.info = info
        self.error: str | None = None
        name = info.name if info is not None else short_name(path.replace("\\", "/").rsplit("/", 1)[-1])
        self.name = name
        self._tip = describe(info) if info is not None else path

        self.enableCheck = name_widget(QCheckBox(name), "loraEnableCheck", f"Use the LoRA {name}",
                                       "Use this LoRA in the next images (untick to keep it here unused)")
        self.enableCheck.setChecked(enabled)
        shown = self.enableCheck.fontMetrics().elidedText(name, Qt.TextElideMode.ElideMiddle, NAME_WIDTH)
        self.enableCheck.setText(shown)  # the whole name is in the tooltip
        self.statusIcon = QLabel()
        self.statusIcon.setObjectName("loraStatusIcon")
        self.statusIcon.hide()
        self.scaleSlider = name_widget(QSlider(Qt.Orientation.Horizontal), "loraScaleSlider",
                                       f"Strength of the LoRA {name}",
                                       "LoRA strength, -2 to 2 (1 = as trained; negative pushes away from it)")
        self.scaleSlider.setRange(round(SCALE_MIN * SLIDER_UNITS), round(SCALE_MAX * SLIDER_UNITS))
        self.scaleSlider.setSingleStep(1)
        self.scaleSlider.setPageStep(SLIDER_UNITS // 4)
        self.scaleSpin = name_widget(QDoubleSpinBox(), "loraScaleSpin", f"Strength of the LoRA {name}",
                                     "LoRA strength: type a value from -2 to 2")
        self.scaleSpin.setRange(SCALE_MIN, SCALE_MAX)
        self.scaleSpin.setSingleStep(SCALE_STEP)
        self.scaleSpin.setDecimals(2)
        link_slider_spin(self.scaleSlider, self.scaleSpin, SLIDER_UNITS)
        self.removeButton = name_widget(QToolButton(), "loraRemoveButton", f"Remove the LoRA {name}",
                                        "Remove this LoRA from the list (Delete)")
        self.removeButton.setText("✕")
        self.removeButton.setAutoRaise(True)
        self.removeButton.clicked.connect(self.removeRequested)
        self.set_scale(scale)
        self.scaleSpin.valueChanged.connect(lambda _: self.changed.emit())  # after the slider has followed
        self.enableCheck.toggled.connect(self._on_toggled)

        top = QHBoxLayout()
        top.setSpacing(4)
        top.addWidget(self.statusIcon)
        top.addWidget(self.enableCheck)  # as wide as its text: a click beside it does not toggle it
        top.addStretch(1)
        top.addWidget(self.removeButton)
        bottom = QHBoxLayout()
        bottom.setSpacing(6)
        bottom.addSpacing(20)
        bottom.addWidget(self.scaleSlider, 1)
        bottom.addWidget(self.scaleSpin)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.setSpacing(0)
        layout.addLayout(top)
        layout.addLayout(bottom)
        if info is not None and info.trigger_words:
            self.triggerLabel = QLabel("Triggers: " + ", ".join(info.trigger_words))
            self.triggerLabel.setObjectName("loraTriggerLabel")
            self.triggerLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.triggerLabel.setForegroundRole(self.palette().ColorRole.PlaceholderText)
            self.triggerLabel.setContentsMargins(20, 0, 0, 0)
            layout.addWidget(self.triggerLabel)
        self._update_tips()

    # -- state --------------------------------------------------------------------------
    def scale(self) -> float:
        return round(self.scaleSpin.value(), 2)

    def set_scale(self, scale: float) -> None:
        self.scaleSpin.setValue(max(SCALE_MIN, min(SCALE_MAX, float(scale))))  # the slider follows

    def is_enabled(self) -> bool:
        return self.enableCheck.isChecked()

    def choice(self) -> LoraChoice:
        return LoraChoice(self.path, self.scale())

    def mark_failed(self, message: str) -> None:
        """This LoRA could not be applied: a red mark saying why, and unticked."""
        self.error = message
        size = self.style().pixelMetric(QStyle.PixelMetric.PM_SmallIconSize)
        self.statusIcon.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxCritical)
                                  .pixmap(size, size))
        self.statusIcon.show()
        self.enableCheck.setChecked(False)
        self._update_tips()

    def clear_mark(self) -> None:
        self.error = None
        self.statusIcon.hide()
        self._update_tips()

    def _update_tips(self) -> None:
        tip = self._tip if self.error is None else f"Could not be applied: {self.error}\n\n{self._tip}"
        self.setToolTip(tip)
        self.statusIcon.setToolTip(tip)
        self.enableCheck.setToolTip(tip if self.error else
                                    f"{self._tip}\n\nTick to use this LoRA in the next images")
        self.enableCheck.setAccessibleDescription(tip)

    def _on_toggled(self, checked: bool) -> None:
        if checked and self.error is not None:
            self.clear_mark()  # ticked again: try it again
        self.changed.emit()


class LibraryCombo(QComboBox):
    """The library's files; refreshed each time it opens, so new files show up at once."""

    aboutToShowPopup = Signal()

    def showPopup(self) -> None:  # noqa: N802
        self.aboutToShowPopup.emit()
        super().showPopup()


class LoraPanel(QWidget):
    changed = Signal()  # the active set or a scale changed
    addRequested = Signal()  # the Add button: choose files
    openFolderRequested = Signal()
    libraryRequested = Signal(str)  # a library file picked
    libraryRefreshRequested = Signal()  # the library list is about to be shown

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("loraPanel")
        title = QLabel("LoRAs")
        self.addLoraButton = name_widget(QPushButton("Add…"), "addLoraButton", "Add a LoRA file",
                                         "Add LoRA .safetensors files (or drop them on the window)")
        self.addLoraButton.setAutoDefault(False)
        self.addLoraButton.clicked.connect(self.addRequested)
        self.openLoraFolderButton = name_widget(QToolButton(), "openLoraFolderButton", "Open the LoRA folder",
                                                "Open the LoRA library folder: files put there are listed "
                                                "under “Add from library”")
        self.openLoraFolderButton.setText("Folder")
        self.openLoraFolderButton.clicked.connect(self.openFolderRequested)
        self.loraLibraryCombo = name_widget(LibraryCombo(), "loraLibraryCombo", "LoRAs in the library folder",
                                            "Add a LoRA from the library folder (name, trigger words and base "
                                            "model in each entry's tooltip)")
        self.loraLibraryCombo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.loraLibraryCombo.setMinimumContentsLength(10)
        self.loraLibraryCombo.addItem(LIBRARY_PROMPT, None)
        self.loraLibraryCombo.aboutToShowPopup.connect(self.libraryRefreshRequested)
        self.loraLibraryCombo.activated.connect(self._on_library_activated)

        self.loraList = name_widget(QListWidget(), "loraList", "Active LoRAs",
                                    "The LoRAs of the next images, applied in this order. Select one and press "
                                    "Delete to remove it")
        self.loraList.setMaximumHeight(150)
        self.loraList.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.loraList.installEventFilter(self)
        self.emptyLabel = QLabel(EMPTY_HINT)
        self.emptyLabel.setObjectName("loraEmptyLabel")
        self.emptyLabel.setWordWrap(True)
        self.emptyLabel.setForegroundRole(self.palette().ColorRole.PlaceholderText)

        header = QHBoxLayout()
        header.setSpacing(6)
        header.addWidget(title, 1)
        header.addWidget(self.addLoraButton)
        header.addWidget(self.openLoraFolderButton)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(header)
        layout.addWidget(self.loraLibraryCombo)
        layout.addWidget(self.loraList)
        layout.addWidget(self.emptyLabel)
        self._update_empty()

    # -- rows ---------------------------------------------------------------------------
    def rows(self) -> list[LoraRow]:
        return [self.loraList.itemWidget(self.loraList.item(i)) for i in range(self.loraList.count())]

    def row_for(self, path: str) -> LoraRow | None:
        return next((row for row in self.rows() if row.path == path), None)

    def choices(self) -> tuple[LoraChoice, ...]:
        """The enabled LoRAs, in list order: what the next image is made with."""
        return tuple(row.choice() for row in self.rows() if row.is_enabled())

    def add(self, path: str, info: LoraInfo | None, scale: float = 1.0, enabled: bool = True,
            emit: bool = True) -> LoraRow:
        """Add a LoRA (one already listed is enabled and selected instead of added twice)."""
        row = self.row_for(path)
        if row is not None:
            row.enableCheck.setChecked(True)
        else:
            row = LoraRow(path, info, scale, enabled)
            item = QListWidgetItem()
            item.setData(Qt.ItemDataRole.UserRole, path)
            item.setData(Qt.ItemDataRole.AccessibleTextRole, row.name)
            item.setToolTip(row.toolTip())
            item.setSizeHint(row.sizeHint())
            self.loraList.addItem(item)
            self.loraList.setItemWidget(item, row)
            row.changed.connect(self.changed)
            row.removeRequested.connect(lambda r=row: self.remove(r))
            self._after_rows_changed()
            if emit:
                self.changed.emit()
        self.loraList.setCurrentRow(self.rows().index(row))
        return row

    def remove(self, row: LoraRow) -> None:
        index = self.rows().index(row)
        self.loraList.takeItem(index)
        row.deleteLater()
        self._after_rows_changed()
        if self.loraList.count():
            self.loraList.setCurrentRow(min(index, self.loraList.count() - 1))
        self.changed.emit()

    def remove_selected(self) -> None:
        row = self.loraList.currentRow()
        if 0 <= row < self.loraList.count():
            self.remove(self.rows()[row])

    def replace(self, loras: list[tuple[LoraChoice, LoraInfo | None]]) -> None:
        """Show exactly these LoRAs, all enabled (restoring an image's settings)."""
        for row in self.rows():
            row.deleteLater()
        self.loraList.clear()
        for choice, info in loras:
            self.add(choice.path, info, choice.scale, emit=False)
        self._after_rows_changed()
        self.changed.emit()

    def mark_failed(self, path: str, message: str) -> LoraRow | None:
        row = self.row_for(path)
        if row is not None:
            row.mark_failed(message)
            self.loraList.item(self.rows().index(row)).setToolTip(row.toolTip())
        return row

    def set_library(self, infos: list[LoraInfo]) -> None:
        """List the library's files (index 0 stays the "Add from library…" prompt)."""
        combo = self.loraLibraryCombo
        combo.blockSignals(True)
        while combo.count() > 1:
            combo.removeItem(1)
        for info in infos:
            label = info.name + (f" · {', '.join(info.trigger_words)}" if info.trigger_words else "")
            combo.addItem(label, str(info.path))
            combo.setItemData(combo.count() - 1, describe(info), Qt.ItemDataRole.ToolTipRole)
        if not infos:
            combo.addItem("(the library folder is empty)", None)
            combo.model().item(1).setEnabled(False)
        combo.setCurrentIndex(0)
        combo.blockSignals(False)

    # -- internals ----------------------------------------------------------------------
    def _on_library_activated(self, index: int) -> None:
        path = self.loraLibraryCombo.itemData(index)
        self.loraLibraryCombo.setCurrentIndex(0)
        if path:
            self.libraryRequested.emit(path)

    def _update_empty(self) -> None:
        empty = self.loraList.count() == 0
        self.loraList.setVisible(not empty)
        self.emptyLabel.setVisible(empty)

    def _after_rows_changed(self) -> None:
        self._update_empty()
        # Keyboard order: the list, then each row's switch, slider, value and remove button.
        order = [self.loraList]
        for row in self.rows():
            order += [row.enableCheck, row.scaleSlider, row.scaleSpin, row.removeButton]
        for first, second in zip(order, order[1:]):
            QWidget.setTabOrder(first, second)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if obj is self.loraList and event.type() == QEvent.Type.KeyPress:
            if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
                self.remove_selected()
                return True
        return super().eventFilter(obj, event)
