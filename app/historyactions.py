"""What the window does with its history: list and search it, show and restore an entry when it
is selected, re-run it, copy its prompt, delete it (its image goes to the Trash).

`HistoryActions` is mixed into MainWindow: it works on the window's history panel and store,
its shown image and its controls.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, QModelIndex
from PySide6.QtGui import QGuiApplication, QImage
from PySide6.QtWidgets import QMessageBox

from app.history import HistoryEntry, HistoryError
from app.historyview import EntryRole
from app.imagepanel import Shown
from app.worker import Job

log = logging.getLogger(__name__)


class HistoryActions:
    """The history list's behaviour; MainWindow supplies the widgets, the store and the shown image."""

    def refresh_history(self, select_id: int | None = None) -> None:
        current = self.selected_entry()
        try:
            entries = self.history.search(self.historySearch.text())
        except HistoryError as exc:
            self.show_message(str(exc))
            entries = []
        self.historyModel.set_entries(entries)
        self.historyPanel.show_count(len(entries), len(self.history), bool(self.historySearch.text().strip()))
        keep = select_id if select_id is not None else (current.id if current else None)
        row = self.historyModel.row_of(keep) if keep is not None else -1
        if row >= 0:
            self._selecting_quietly = True
            try:
                self.historyList.selectionModel().setCurrentIndex(
                    self.historyModel.index(row), QItemSelectionModel.SelectionFlag.ClearAndSelect)
                self.historyList.scrollTo(self.historyModel.index(row))
            finally:
                self._selecting_quietly = False
        self._update_history_actions()

    def _thumbnail(self, entry_id: int) -> bytes | None:
        return self.history.thumbnail(entry_id)

    def selected_entry(self) -> HistoryEntry | None:
        index = self.historyList.currentIndex()
        return index.data(EntryRole) if index.isValid() and self.historyList.selectionModel().isSelected(index) else None

    def _update_history_actions(self) -> None:
        has = self.selected_entry() is not None
        for widget in (self.rerunButton, self.copyPromptButton, self.deleteButton, self.rerunAction,
                       self.copyPromptAction, self.deleteAction):
            widget.setEnabled(has)

    def _on_history_current(self, current: QModelIndex, previous: QModelIndex) -> None:
        self._update_history_actions()
        entry = current.data(EntryRole) if current.isValid() else None
        if entry is not None and not self._selecting_quietly:
            self.restore_entry(entry)

    def _on_history_clicked(self, index: QModelIndex) -> None:
        entry = index.data(EntryRole)
        if entry is not None:  # restoring twice (current change + click) is harmless
            self.restore_entry(entry)

    def restore_entry(self, entry: HistoryEntry) -> None:
        """Show the entry's image and put all its settings back in the controls."""
        image = QImage(str(entry.image_path))
        if image.isNull():
            self.show_message(f"The image file of this entry is missing: {entry.image_path}", "warning")
        self.show_image(Shown(image, entry.params, entry.metadata,
                              entry.image_path if not image.isNull() else None, entry.id))
        self._view_pinned = not image.isNull()
        self.restore_params(entry.params)

    def rerun_selected(self) -> list[Job]:
        entry = self.selected_entry()
        if entry is None:
            return []
        self.restore_params(entry.params)
        return self.submit([entry.params])

    def copy_selected_prompt(self) -> None:
        entry = self.selected_entry()
        if entry is not None:
            QGuiApplication.clipboard().setText(entry.prompt)
            self.statusBar().showMessage("Prompt copied", 3000)

    def delete_selected(self) -> None:
        """Ask, then delete the selected entry and move its image to the Trash."""
        entry = self.selected_entry()
        if entry is None:
            return
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete Image",
                          "Delete this image from the history?", parent=self)
        box.setObjectName("confirmDeleteBox")
        box.setInformativeText(f"“{entry.prompt[:80]}”, seed {entry.seed}.\n"
                               "Its image file is moved to the Trash. Other images are not affected.")
        delete = box.addButton("Delete", QMessageBox.ButtonRole.DestructiveRole)
        delete.setObjectName("confirmDeleteButton")
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() is delete:
            self.delete_entry(entry)

    def delete_entry(self, entry: HistoryEntry) -> None:
        row = self.historyModel.row_of(entry.id)
        try:
            self.history.delete(entry.id)
        except HistoryError as exc:
            self.show_message(str(exc))
            return
        _trash(entry.image_path)
        if self.shown is not None and self.shown.entry_id == entry.id:
            self.shown = None
            self._view_pinned = False  # nothing left to look at: back to the live previews
            self.previewView.clear()
            self.imageInfoLabel.setText("")
            self._update_image_actions()
        self.historyList.selectionModel().clearSelection()
        self.refresh_history()
        # Keep the keyboard in the list: move to the neighbour of the deleted row.
        if self.historyModel.rowCount():
            neighbour = self.historyModel.index(min(row, self.historyModel.rowCount() - 1))
            self._selecting_quietly = True
            try:
                self.historyList.selectionModel().setCurrentIndex(neighbour, QItemSelectionModel.SelectionFlag.Current)
            finally:
                self._selecting_quietly = False
        self._update_history_actions()


def _trash(path: Path) -> None:
    """Move an image to the Trash (recoverable); delete it if there is no Trash."""
    from PySide6.QtCore import QFile

    if not path.exists():
        return
    try:
        moved = QFile.moveToTrash(str(path))
        if not (moved[0] if isinstance(moved, tuple) else moved):  # the return type varies by binding
            path.unlink()
    except OSError:
        log.exception("could not remove %s", path)
