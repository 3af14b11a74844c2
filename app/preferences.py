"""The Preferences dialog (Cmd+,): where the data lives, the default precision, live previews
and notifications. Changes apply as they are made (as on macOS); the data folder from the next
launch on, since the history and images of this session are open."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel, QPushButton,
    QVBoxLayout, QWidget,
)

from app import APP_DISPLAY_NAME
from app.launchconfig import choose_data_dir, chosen_data_dir
from app.widgets import name_widget

if TYPE_CHECKING:
    from app.window import MainWindow

PRECISION_CHOICES = [
    ("Automatic (by this computer's memory)", "auto"), ("Full precision", "full"), ("8-bit", "8"), ("4-bit", "4"),
]


def ask_folder(parent: QWidget, start: Path) -> Path | None:
    """The folder dialog (tests replace this function)."""
    chosen = QFileDialog.getExistingDirectory(parent, "Choose the Data Folder", str(start))
    return Path(chosen) if chosen else None


class PreferencesDialog(QDialog):
    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.setObjectName("preferencesDialog")
        self.setWindowTitle("Preferences" if not _is_mac() else "Settings")
        self._window = window
        settings = window.settings

        # Data folder: the one in use; a new choice applies at the next launch.
        self.dataFolderLabel = name_widget(QLabel(str(window.data_dir.root)), "dataFolderLabel",
                                           "The folder with the history, images and settings")
        self.dataFolderLabel.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.dataFolderLabel.setWordWrap(True)
        self.changeDataFolderButton = name_widget(QPushButton("Change…"), "changeDataFolderButton", None,
                                                  f"Keep the history and images in another folder from the next "
                                                  f"start of {APP_DISPLAY_NAME} on")
        self.changeDataFolderButton.setAutoDefault(False)
        self.changeDataFolderButton.clicked.connect(self._change_data_folder)
        self.dataFolderNote = QLabel()
        self.dataFolderNote.setObjectName("dataFolderNote")
        self.dataFolderNote.setWordWrap(True)
        self.dataFolderNote.setForegroundRole(self.palette().ColorRole.PlaceholderText)
        next_dir = chosen_data_dir()
        if next_dir is not None and next_dir.expanduser().resolve() != window.data_dir.root:
            self._say_next(next_dir)
        else:
            self.dataFolderNote.hide()
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.dataFolderLabel, 1)
        folder_row.addWidget(self.changeDataFolderButton)

        self.defaultPrecisionCombo = name_widget(QComboBox(), "defaultPrecisionCombo", "Default precision",
                                                 "The weight precision the app starts with: smaller weights use "
                                                 "less memory")
        for label, value in PRECISION_CHOICES:
            self.defaultPrecisionCombo.addItem(label, value)
        self.defaultPrecisionCombo.setCurrentIndex(self.defaultPrecisionCombo.findData(settings.default_precision))
        self.defaultPrecisionCombo.activated.connect(self._precision_chosen)

        self.livePreviewsCheck = name_widget(QCheckBox("Show live previews while generating"), "livePreviewsCheck",
                                             None, "Off: only the step counter, and a little less work per step")
        self.livePreviewsCheck.setChecked(settings.live_previews)
        self.livePreviewsCheck.toggled.connect(self._previews_toggled)
        self.notifyCheck = name_widget(QCheckBox("Notify when images finish in the background"), "notifyCheck",
                                       None, "A notification and a count on the app icon when images finish "
                                             "while you are in another app")
        self.notifyCheck.setChecked(settings.notify_finished)
        self.notifyCheck.toggled.connect(self._notify_toggled)

        form = QFormLayout()
        form.addRow("Data folder", folder_row)
        form.addRow("", self.dataFolderNote)
        form.addRow("Default precision", self.defaultPrecisionCombo)
        from app.machine import recommended_precision  # light: no MLX import

        self.precisionReasonLabel = name_widget(QLabel(f"Automatic means {recommended_precision().reason}."),
                                                "precisionReasonLabel", "Why Automatic picks this precision")
        self.precisionReasonLabel.setWordWrap(True)
        form.addRow("", self.precisionReasonLabel)
        form.addRow("Previews", self.livePreviewsCheck)
        form.addRow("Notifications", self.notifyCheck)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.closeButton = buttons.button(QDialogButtonBox.StandardButton.Close)
        self.closeButton.setObjectName("closeButton")
        self.closeButton.setToolTip("Close the preferences (changes are already applied)")
        buttons.rejected.connect(self.close)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(buttons)

    def _change_data_folder(self) -> None:
        start = chosen_data_dir() or self._window.data_dir.root
        folder = ask_folder(self, start)
        if folder is None:
            return
        folder = folder.expanduser().resolve()
        if folder == self._window.data_dir.root:
            choose_data_dir(None if chosen_data_dir() is None else folder)
            self.dataFolderNote.hide()
            return
        choose_data_dir(folder)
        self._say_next(folder)

    def _say_next(self, folder: Path) -> None:
        self.dataFolderNote.setText(f"From the next start of {APP_DISPLAY_NAME} on: {folder}")
        self.dataFolderNote.show()

    def _precision_chosen(self, index: int) -> None:
        self._window.settings.default_precision = self.defaultPrecisionCombo.itemData(index)
        self._window.settings.sync()

    def _previews_toggled(self, on: bool) -> None:
        self._window.settings.live_previews = on
        self._window.settings.sync()
        apply_preferences(self._window)

    def _notify_toggled(self, on: bool) -> None:
        self._window.settings.notify_finished = on
        self._window.settings.sync()


def apply_preferences(w: MainWindow) -> None:
    """What the running app does differently right away (the rest is read when needed)."""
    w.queue.worker.previews = w.settings.live_previews


def show_preferences(w: MainWindow) -> PreferencesDialog:
    """Open (or bring forward) the one dialog; it does not block, like a Mac settings window."""
    dialog = w.findChild(PreferencesDialog, "preferencesDialog")
    if dialog is None:
        dialog = PreferencesDialog(w)
    dialog.show()
    dialog.raise_()
    dialog.activateWindow()
    return dialog


def _is_mac() -> bool:
    import sys

    return sys.platform == "darwin"
