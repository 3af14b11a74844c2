"""What the window does with its history: list and search it, show an entry's image when it is
selected, restore its prompt, its seed or all its settings when asked (Use Prompt, Use Seed,
Use Settings; double-click or Enter is Use Settings), re-run it, copy its prompt, delete it
(its image goes to the Trash).

Selecting only looks: stepping through the history with the arrow keys must not overwrite the
prompt being written, lock the seed, or reload a model of many GB.

`HistoryController` is owned by the main window: it works on the window's history panel and
store, its shown image and (through the restore controller) its controls.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QItemSelection, QItemSelectionModel, QModelIndex, Qt
from PySide6.QtGui import QGuiApplication, QImage, QKeySequence, QShortcut
from PySide6.QtWidgets import QMessageBox

from typing import TYPE_CHECKING

from app.history import HistoryEntry, HistoryError
from app.historyview import EntryRole, summary
from app.imagepanel import Shown
from app.worker import Job

if TYPE_CHECKING:
    from app.window import MainWindow

log = logging.getLogger(__name__)


class HistoryController:
    """The history list's behaviour: the window supplies the store, the panel and the shown image."""

    def __init__(self, window: MainWindow) -> None:
        self.window = window
        self.history = window.history
        self.panel = window.historyPanel
        self.model = self.panel.historyModel
        self.list = self.panel.historyList
        p = self.panel
        p.historySearch.textChanged.connect(lambda _: self.refresh_history())
        self.list.selectionModel().currentChanged.connect(self._on_history_current)
        # A click shows even the entry that is already current (e.g. the image just made, while
        # the view follows a run).
        self.list.clicked.connect(self._on_history_clicked)
        self.list.doubleClicked.connect(lambda index: self.use_settings())
        for key in (Qt.Key.Key_Return, Qt.Key.Key_Enter):  # kept alive by their parent, the list
            shortcut = QShortcut(QKeySequence(key), self.list)
            shortcut.setContext(Qt.ShortcutContext.WidgetShortcut)  # the list's own key, not the window's
            shortcut.activated.connect(self.use_settings)
        # The restoring buttons' own tooltips, for when a single entry is selected again.
        self._usual_tips = {button: button.toolTip() for button in
                            (p.rerunButton, p.usePromptButton, p.useSeedButton, p.useSettingsButton)}
        self.list.selectionModel().selectionChanged.connect(lambda *_: self.update_actions())
        p.rerunButton.clicked.connect(self.rerun_selected)
        p.copyPromptButton.clicked.connect(self.copy_selected_prompt)
        p.deleteButton.clicked.connect(self.delete_selected)
        p.usePromptButton.clicked.connect(self.use_prompt)
        p.useSeedButton.clicked.connect(self.use_seed)
        p.useSettingsButton.clicked.connect(self.use_settings)

    def _select_quietly(self, index, flag) -> None:
        view = self.window.view
        view.selecting_quietly = True
        try:
            self.list.selectionModel().setCurrentIndex(index, flag)
        finally:
            view.selecting_quietly = False

    def refresh_history(self, select_id: int | None = None) -> None:
        """Relist (a new image, a search); `select_id` becomes the one selected row (a followed
        run's new image), else the rows selected stay selected, several too (a grid or a
        comparison the person opened stays open while images finish)."""
        current = self.selected_entry()
        kept = [entry.id for entry in self.selected_entries()]
        search = self.panel.historySearch.text()
        try:
            entries = self.history.search(search)
        except HistoryError as exc:
            self.window.show_message(str(exc))
            entries = []
        view = self.window.view
        view.selecting_quietly = True  # the reset's own selection changes are not the person's
        try:
            self.model.set_entries(entries)
            self.panel.show_count(len(entries), len(self.history), bool(search.strip()))
            if select_id is not None:
                kept, current_id = [select_id], select_id
            else:
                current_id = current.id if current is not None else None
            self._reselect(kept, current_id)
        finally:
            view.selecting_quietly = False
        self.update_actions()

    def _reselect(self, ids: list[int], current_id: int | None) -> None:
        """Select the rows of `ids` (those still listed), `current_id`'s the current one."""
        rows = [row for row in (self.model.row_of(i) for i in ids) if row >= 0]
        if not rows:
            return
        selection = QItemSelection()
        for row in rows:
            selection.select(self.model.index(row), self.model.index(row))
        model = self.list.selectionModel()
        model.select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        current_row = self.model.row_of(current_id) if current_id is not None else -1
        index = self.model.index(current_row if current_row in rows else rows[0])
        model.setCurrentIndex(index, QItemSelectionModel.SelectionFlag.NoUpdate)
        self.list.scrollTo(index)

    def selected_entry(self) -> HistoryEntry | None:
        index = self.list.currentIndex()
        return index.data(EntryRole) if index.isValid() and self.list.selectionModel().isSelected(index) else None

    def selected_entries(self) -> list[HistoryEntry]:
        """The selected entries, in list order (newest first)."""
        rows = sorted(self.list.selectionModel().selectedRows(), key=lambda index: index.row())
        return [entry for index in rows if (entry := index.data(EntryRole)) is not None]

    def single_entry(self) -> HistoryEntry | None:
        """The entry that Use Prompt / Use Seed / Use Settings / Re-run / Use as Input act on:
        the selected one, none while several are selected (which one would be a guess)."""
        return self.selected_entry() if len(self.list.selectionModel().selectedRows()) <= 1 else None

    def update_actions(self) -> None:
        w, p = self.window, self.panel
        count = len(self.list.selectionModel().selectedRows())
        one = self.single_entry() is not None
        # Delete and Copy Prompt take all the selected entries; restoring and re-running take one.
        for widget in (p.rerunButton, w.rerunAction, w.useEntryAsInputAction, p.usePromptButton,
                       p.useSeedButton, p.useSettingsButton, w.usePromptAction, w.useSeedAction,
                       w.useSettingsAction):
            widget.setEnabled(one)
        for widget in (p.copyPromptButton, p.deleteButton, w.copyPromptAction, w.deleteAction):
            widget.setEnabled(count >= 1)
        several = count > 1
        p.deleteButton.setText(f"Delete {count}…" if several else "Delete…")
        delete_text = f"Delete {count} Entries…" if several else "Delete Entry…"
        for action in (w.deleteAction, w.deleteKeyAction):  # the menu's, and the list's context menu's
            action.setText(delete_text)
        p.copyPromptButton.setText(f"Copy {count} Prompts" if several else "Copy Prompt")
        w.copyPromptAction.setText(f"Copy {count} Prompts" if several else "Copy Prompt")
        for button, usual in self._usual_tips.items():
            button.setToolTip("Select a single image for this" if several else usual)

    def _on_history_current(self, current: QModelIndex, previous: QModelIndex) -> None:
        self.update_actions()
        entry = current.data(EntryRole) if current.isValid() else None
        if entry is not None and not self.window.view.selecting_quietly:
            self.view_entry(entry)

    def _on_history_clicked(self, index: QModelIndex) -> None:
        entry = index.data(EntryRole)
        if entry is not None:  # showing twice (current change + click) is harmless
            self.view_entry(entry)

    def view_entry(self, entry: HistoryEntry) -> None:
        """Show the entry's image, its settings in the caption and its prompt in the caption's
        tooltip; the controls stay as they are."""
        w = self.window
        image = QImage(str(entry.image_path))
        if image.isNull():
            w.show_message(f"The image file of this entry is missing: {entry.image_path}", "warning")
        w.show_image(Shown(image, entry.params, entry.image_path if not image.isNull() else None, entry.id))
        w.set_pinned(not image.isNull())
        w.imageInfoLabel.setToolTip(f"{entry.prompt}\n{summary(entry)}\n{entry.image_path}")

    # -- restoring, only when asked -------------------------------------------------------------
    def use_prompt(self) -> None:
        """The entry's prompt replaces the one in the box (Cmd+Z brings the old one back)."""
        entry = self.single_entry()
        if entry is not None:
            self.window.controls.promptEdit.replace_text(entry.prompt)
            self.window.statusBar().showMessage("Prompt replaced (Undo brings yours back)", 4000)

    def use_seed(self) -> None:
        """Lock the seed to the entry's: the next image varies only with what is changed."""
        entry = self.single_entry()
        if entry is not None and entry.seed is not None:
            self.window.controls.set_seed(entry.seed, lock=True)
            self.window.statusBar().showMessage(f"Seed locked to {entry.seed}", 4000)

    def use_settings(self) -> None:
        """Everything the entry was made with back in the controls; a different model is asked for."""
        entry = self.single_entry()
        if entry is not None:
            self.window.restorer.use_settings(entry.params)
            self.window.statusBar().showMessage("Settings of this image restored", 4000)

    def focus_search(self) -> None:
        search = self.panel.historySearch
        search.setFocus(Qt.FocusReason.ShortcutFocusReason)
        search.selectAll()

    def rerun_selected(self) -> list[Job]:
        """Make the entry again with its own settings (and model, if the person agrees to switch)."""
        entry = self.single_entry()
        if entry is None:
            return []
        params = self.window.restorer.use_settings(entry.params)
        if params.request.image is not None and params.input is None:
            return []  # its input image is gone (the restore said so): it cannot be made again
        if params.request.mask is not None and params.mask is None:
            return []  # its mask is gone (the restore said so)
        return self.window.submit([params])

    def use_selected_as_input(self) -> None:
        """The selected entry's image becomes the input of the next one."""
        entry = self.single_entry()
        if entry is not None:
            self.window.input_controller.use_entry(entry)

    def copy_selected_prompt(self) -> None:
        """The selected entries' prompts, one a line (newest first)."""
        entries = self.selected_entries()
        if entries:
            QGuiApplication.clipboard().setText("\n".join(entry.prompt for entry in entries))
            self.window.statusBar().showMessage("Prompt copied" if len(entries) == 1 else
                                                f"{len(entries)} prompts copied", 3000)

    def delete_selected(self) -> None:
        """Ask, then delete the selected entries and move their images to the Trash."""
        entries = self.selected_entries()
        if not entries:
            return
        n = len(entries)
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete Image" if n == 1 else "Delete Images",
                          "Delete this image from the history?" if n == 1 else f"Delete {n} images from the history?",
                          parent=self.window)
        box.setObjectName("confirmDeleteBox")
        if n == 1:
            box.setInformativeText(f"“{entries[0].prompt[:80]}”, seed {entries[0].seed}.\n"
                                   "Its image file is moved to the Trash. Other images are not affected.")
        else:
            box.setInformativeText("Their image files are moved to the Trash. Other images are not affected.")
        delete = box.addButton("Delete" if n == 1 else f"Delete {n}", QMessageBox.ButtonRole.DestructiveRole)
        delete.setObjectName("confirmDeleteButton")
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        box.exec()
        if box.clickedButton() is delete:
            self.delete_entries(entries)

    def delete_entries(self, entries: list[HistoryEntry]) -> None:
        """Delete the entries from the history, their images to the Trash (asked once for all
        that cannot go there); the keyboard stays in the list, on the first one's neighbour."""
        w = self.window
        rows = [row for row in (self.model.row_of(entry.id) for entry in entries) if row >= 0]
        gone: list[HistoryEntry] = []
        for entry in entries:
            try:
                self.history.delete(entry.id)
            except HistoryError as exc:
                w.show_message(str(exc))
                break
            gone.append(entry)
        if not gone:
            return
        self._remove_files([entry.image_path for entry in gone])
        if w.shown is not None and w.shown.entry_id in {entry.id for entry in gone}:
            w.shown = None
            w.set_pinned(False)  # nothing left to look at: back to the live previews
            w.clear_image()
        self.list.selectionModel().clearSelection()
        self.refresh_history()
        # Keep the keyboard in the list: move to the neighbour of the (first) deleted row.
        if self.model.rowCount() and rows:
            neighbour = self.model.index(min(min(rows), self.model.rowCount() - 1))
            self._select_quietly(neighbour, QItemSelectionModel.SelectionFlag.Current)
        self.update_actions()

    def _remove_files(self, paths: list[Path]) -> None:
        """Move entries' images to the Trash, only ever inside the data folder; where there is no
        usable Trash, ask once before deleting them for good (the confirmation promised the Trash)."""
        w = self.window
        stuck: list[Path] = []
        for path in paths:
            if not path.exists() and not path.is_symlink():
                continue
            if not inside(path, self.history.data_dir):  # a row edited or made elsewhere: never follow it out
                w.show_message(f"The entry is gone; its image file {path.name} is outside the data folder and "
                               "was left where it is.", "info")
                continue
            if not move_to_trash(path):
                stuck.append(path)
        if not stuck:
            return
        one = len(stuck) == 1
        box = QMessageBox(QMessageBox.Icon.Warning, "Delete Image" if one else "Delete Images",
                          f"“{stuck[0].name}” cannot be moved to the Trash." if one else
                          f"{len(stuck)} image files cannot be moved to the Trash.", parent=w)
        box.setObjectName("confirmPermanentDeleteBox")
        box.setInformativeText(f"Delete {'it' if one else 'them'} permanently? This cannot be undone.")
        delete = box.addButton("Delete Permanently", QMessageBox.ButtonRole.DestructiveRole)
        delete.setObjectName("deletePermanentlyButton")
        keep = box.addButton("Keep the File" if one else "Keep the Files", QMessageBox.ButtonRole.RejectRole)
        keep.setObjectName("keepFileButton")
        box.setDefaultButton(keep)
        box.exec()
        if box.clickedButton() is not delete:
            w.show_message(f"The entry is gone; its image file was kept: {stuck[0]}" if one else
                           f"The entries are gone; their image files were kept in {stuck[0].parent}", "info")
            return
        for path in stuck:
            try:
                path.unlink()
            except OSError as exc:
                log.exception("could not remove %s", path)
                w.show_message(f"Could not delete {path.name}: {exc.strerror or exc}")


def inside(path: Path, folder: Path) -> bool:
    """Whether `path` (links followed) lies inside `folder`."""
    try:
        return Path(path).resolve().is_relative_to(Path(folder).resolve())
    except (OSError, RuntimeError):
        return False


def move_to_trash(path: Path) -> bool:
    """Move a file to the Trash (recoverable); False where no Trash is usable."""
    from PySide6.QtCore import QFile

    try:
        moved = QFile.moveToTrash(str(path))
    except OSError:
        return False
    return bool(moved[0] if isinstance(moved, tuple) else moved)  # the return type varies by binding
