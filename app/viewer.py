"""What the image area shows and how a person moves through images: one image (zoomed as chosen),
a batch's images in a grid, two images side by side, Quick Look, the arrow keys through the
history, full screen.

`ViewerController` is owned by the main window (like HistoryController): it works on the image
panel's pages (`previewView`, `batchGrid`, `compareView`), the history list and the job queue.
Moving through images always goes through the history list's current row, so the list and the
view agree; what showing a row does is the history controller's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from PySide6.QtCore import QItemSelectionModel, QSize, Qt, QTimer
from PySide6.QtGui import QImage
from PySide6.QtWidgets import QAbstractItemView, QApplication, QWidget

from app.batchgrid import MAX_TILE_PIXELS, GridItem, load_scaled
from app.history import HistoryError
from app.historyview import EntryRole
from app.imagepanel import Shown
from app.imageview import ImageView
from app.quicklook import QuickLook

if TYPE_CHECKING:
    from app.history import HistoryEntry
    from app.window import MainWindow
    from app.worker import Job, JobResult

MAX_GRID = 36  # selected entries shown in the grid at most (each is a file to read)


@dataclass
class _Batch:
    """The jobs of one submit of several images, and the images finished so far (by job id)."""

    ids: set[int]
    items: dict[int, GridItem] = field(default_factory=dict)


class ViewerController:
    def __init__(self, window: MainWindow) -> None:
        self.window = w = window
        self.panel = w.imagePanel
        self.view = w.previewView
        self.grid = self.panel.batchGrid
        self.compare = self.panel.compareView
        self.list = w.historyList
        self.model = w.historyModel
        self.quick_look: QuickLook | None = None
        self._batches: list[_Batch] = []
        self._grid_source: str | None = None  # "batch" (the last batch made) or "selection" (history rows)
        self._last_batch: list[GridItem] = []  # the last batch's images, while the grid shows others
        self._token = 0  # bumped by every page change: a deferred check made before it is stale
        self._quiet = False  # showing an image ourselves: the view's imageChanged is ours
        self._was_maximized = False
        # Cmd/Ctrl-click and Shift-click select several entries: the grid, or two to compare.
        self.list.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.list.selectionModel().selectionChanged.connect(lambda *_: self._on_selection())
        self.view.stepRequested.connect(self.step)
        self.view.imageChanged.connect(self._on_image_changed)
        self.grid.picked.connect(self.show_tile)
        # The mask editor can take the middle too (app/maskcontroller.py): the buttons follow.
        self.panel.viewStack.currentChanged.connect(lambda _: self._on_page_changed())
        self.panel.gridButton.clicked.connect(lambda: self.toggle_grid())
        self.panel.compareButton.clicked.connect(lambda: self.toggle_compare())
        q = w.queue  # connected after the window's own handlers, which run first
        q.jobStarted.connect(self._on_job_started)
        q.finished.connect(self._on_finished)
        q.failed.connect(lambda *_: self._check_batches())
        q.cancelled.connect(lambda *_: self._check_batches())

    # -- pages -------------------------------------------------------------------------------
    def mode(self) -> str:
        """'image', 'grid', 'compare' or 'mask': what the middle of the window shows."""
        current = self.panel.viewStack.currentWidget()
        return {self.view: "image", self.grid: "grid", self.compare: "compare"}.get(current, "mask")

    def show_page(self, name: str) -> None:
        self._token += 1
        page: QWidget = {"image": self.view, "grid": self.grid, "compare": self.compare}[name]
        current = self.panel.viewStack.currentWidget()
        had_focus = current.hasFocus() or current.isAncestorOf(QApplication.focusWidget())
        if self.panel.mask_shown():
            self.panel.maskViewButton.setChecked(False)  # the mask editor stays a click away
        self.panel.viewStack.setCurrentWidget(page)
        self._on_page_changed()
        if had_focus:  # the keys keep working on what replaced it
            (page.leftView if page is self.compare else page).setFocus()

    def _on_page_changed(self) -> None:
        self.update_actions()

    def selected_entries(self) -> list[HistoryEntry]:
        rows = sorted(self.list.selectionModel().selectedRows(), key=lambda index: index.row())
        return [entry for index in rows if (entry := index.data(EntryRole)) is not None]

    def grid_available(self) -> bool:
        return (bool(self.grid.items()) and (self._grid_source == "batch" or len(self.selected_entries()) >= 2)) \
            or bool(self._last_batch)

    def update_actions(self) -> None:
        w, p, mode = self.window, self.panel, self.mode()
        two = len(self.selected_entries()) == 2
        grid = self.grid_available()
        p.gridButton.setVisible(grid)
        p.gridButton.setChecked(mode == "grid")
        p.compareButton.setVisible(two or mode == "compare")
        p.compareButton.setChecked(mode == "compare")
        for name, enabled, checked in (("gridAction", grid, mode == "grid"),
                                       ("compareAction", two or mode == "compare", mode == "compare")):
            action = getattr(w, name, None)
            if action is not None:
                action.setEnabled(enabled)
                action.setChecked(checked)

    def toggle_grid(self) -> None:
        """Grid ↔ the image alone."""
        if self.mode() == "grid":
            self.show_page("image")
        elif self.grid_available():
            if self._grid_source == "selection":
                if len(self.selected_entries()) >= 2:
                    self._fill_grid_from_selection()
                else:  # one entry selected: the last batch, which waited while the selection was shown
                    self._set_grid(self._last_batch, "batch")
            self.show_page("grid")
        else:
            self.update_actions()

    def toggle_compare(self) -> None:
        """The two selected entries side by side ↔ the image alone."""
        if self.mode() == "compare":
            self.show_page("image")
            return
        entries = self.selected_entries()
        if len(entries) != 2:
            self.window.show_message("Select two images in the history (Cmd-click or Ctrl-click the second) "
                                     "to compare them.", "info")
            self.update_actions()
            return
        images = [QImage(str(entry.image_path)) for entry in entries]
        missing = [str(entry.image_path) for entry, image in zip(entries, images) if image.isNull()]
        if missing:
            self.window.show_message(f"The image file of an entry is missing: {missing[0]}", "warning")
            self.update_actions()
            return
        self.compare.leftView.set_view_state(self.view.view_state())  # the zoom chosen carries over
        self.compare.set_images((images[0], entries[0].params), (images[1], entries[1].params))
        self.show_page("compare")

    def active_view(self) -> ImageView:
        """The view the zoom actions act on."""
        return self.compare.leftView if self.mode() == "compare" else self.view

    def zoom(self, how: str) -> None:
        """'fit', 'actual', 'in' or 'out' on the image in view."""
        getattr(self.active_view(), f"zoom_{how}")()

    # -- the history selection and the shown image -----------------------------------------------
    def _on_selection(self) -> None:
        if self.window.view.selecting_quietly:  # the history relisted (an image finished): the
            self.update_actions()               # selection is put back as it was, the page stays
            return
        entries = self.selected_entries()
        mode = self.mode()
        if len(entries) >= 2:
            if mode == "compare" and len(entries) == 2:
                self._token += 1
                self._refresh_compare(entries)
            else:
                self._fill_grid_from_selection()
                self.show_page("grid")
        elif mode == "compare" or (mode == "grid" and self._grid_source == "selection"):
            self.show_page("image")
        self.update_actions()

    def _refresh_compare(self, entries: list[HistoryEntry]) -> None:
        images = [QImage(str(entry.image_path)) for entry in entries]
        self.compare.set_images((images[0], entries[0].params), (images[1], entries[1].params))

    def _fill_grid_from_selection(self) -> None:
        entries = self.selected_entries()[:MAX_GRID]
        self._set_grid([GridItem(load_scaled(e.image_path), e.params, e.id) for e in entries], "selection")

    def _set_grid(self, items: list[GridItem], source: str) -> None:
        """Fill the grid; its highlighted tile is the image in the window (what Export, Copy and
        the caption are about), else a batch's last image."""
        self._grid_source = source
        shown = self.window.shown
        current = next((i for i, item in enumerate(items) if shown is not None and item.entry_id is not None
                        and item.entry_id == shown.entry_id), len(items) - 1 if source == "batch" else 0)
        self.grid.set_items(items, current)

    def _on_image_changed(self, preview: bool) -> None:
        """A run's previews take the view back to the single image; another image shown (a restore,
        a click in the history) does too, once the click that made it has settled, unless that
        click was the one that selected several entries (their grid is what it asked for)."""
        self._mirror_soon()
        if self._quiet or self.mode() not in ("grid", "compare"):
            return
        if preview:
            self.show_page("image")
            return
        token = self._token
        QTimer.singleShot(0, lambda: self._settle(token))

    def _settle(self, token: int) -> None:
        if token != self._token:
            return
        count = len(self.selected_entries())
        if (self.mode() == "grid" and self._grid_source == "selection" and count >= 2) or \
                (self.mode() == "compare" and count == 2):
            return
        self.show_page("image")

    def show_tile(self, index: int) -> None:
        """The grid's image `index` alone, through its history row (so the list agrees)."""
        items = self.grid.items()
        if not 0 <= index < len(items):
            return
        item, w = items[index], self.window
        row = self.model.row_of(item.entry_id) if item.entry_id is not None else -1
        self._quiet = True
        try:
            if row >= 0:
                model_index = self.model.index(row)
                keep = self._grid_source == "selection"  # the selected entries stay selected (Grid returns)
                if self.list.currentIndex() != model_index:
                    flag = QItemSelectionModel.SelectionFlag.NoUpdate if keep else \
                        QItemSelectionModel.SelectionFlag.ClearAndSelect
                    self.list.selectionModel().setCurrentIndex(model_index, flag)
                self.list.scrollTo(model_index)
                entry = model_index.data(EntryRole)
                if w.shown is None or w.shown.entry_id != entry.id:  # the row was current already
                    self._show_entry(entry)
            else:  # not listed (a search hides it) or never saved
                entry = self._stored_entry(item.entry_id)
                if entry is not None:
                    self._show_entry(entry)
                else:
                    w.show_image(Shown(item.full or item.image, item.params, None, None))
        finally:
            self._quiet = False
        had_focus = self.grid.hasFocus()
        self.show_page("image")
        if had_focus:
            self.view.setFocus()

    def _stored_entry(self, entry_id: int | None) -> HistoryEntry | None:
        if entry_id is None:
            return None
        try:
            return self.window.history.get(entry_id)
        except HistoryError:
            return None

    def _show_entry(self, entry: HistoryEntry) -> None:
        image = QImage(str(entry.image_path))
        if image.isNull():
            self.window.show_message(f"The image file of this entry is missing: {entry.image_path}", "warning")
            return
        self.window.show_image(Shown(image, entry.params, entry.image_path, entry.id))
        self.window.set_pinned(True)

    def step(self, delta: int) -> None:
        """The previous (-1) or next (+1) history entry: its row becomes current (and shows)."""
        n = self.model.rowCount()
        if not n:
            return
        current, shown = self.list.currentIndex(), self.window.shown
        row = current.row() if current.isValid() else \
            self.model.row_of(shown.entry_id) if shown is not None and shown.entry_id is not None else -1
        target = min(n - 1, max(0, row + delta)) if row >= 0 else 0
        if target == row and self.list.selectionModel().isSelected(current):
            return
        index = self.model.index(target)
        self.list.selectionModel().setCurrentIndex(index, QItemSelectionModel.SelectionFlag.ClearAndSelect)
        self.list.scrollTo(index)

    # -- batches -------------------------------------------------------------------------------
    def note_submitted(self, jobs: list[Job]) -> None:
        """The jobs of one submit: several make a batch, shown as a grid once all are done."""
        if len(jobs) >= 2:
            self._batches.append(_Batch({job.id for job in jobs}))

    def _on_job_started(self, job: Job) -> None:
        if not self.window.view.pinned and self.mode() in ("grid", "compare"):
            self.show_page("image")  # the view follows the run: its caption says "Generating"
        p = job.params
        self.view.expect_size(QSize(p.width, p.height) if p.width and p.height else QSize())

    def _on_finished(self, result: JobResult) -> None:
        batch = next((b for b in self._batches if result.job.id in b.ids), None)
        if batch is not None:
            latest = self.window.view.latest_finished  # what the window made of this result just now
            entry_id = latest.entry_id if latest is not None and latest.params == result.params else None
            image = full = result.image
            if max(image.width(), image.height()) > MAX_TILE_PIXELS:
                image = image.scaled(MAX_TILE_PIXELS, MAX_TILE_PIXELS, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.SmoothTransformation)
            batch.items[result.job.id] = GridItem(image, result.params, entry_id, None if entry_id else full)
        self._check_batches()

    def _check_batches(self) -> None:
        """A batch is done when none of its jobs is queued or running (a failed run ends them all
        at once, a cancelled one may leave a few images)."""
        q = self.window.queue
        alive = {job.id for job in q.running_jobs + q.pending}
        for batch in [b for b in self._batches if not b.ids & alive]:
            self._batches.remove(batch)
            if len(batch.items) >= 2:
                self._last_batch = [batch.items[i] for i in sorted(batch.items)]
                if self.mode() == "grid" and self._grid_source == "selection":
                    self.update_actions()  # the entries the person selected stay in the grid
                    continue
                self._set_grid(self._last_batch, "batch")
                if not self.window.view.pinned:  # the person is not looking at another image
                    self.show_page("grid")
                self.update_actions()

    # -- Quick Look and full screen ------------------------------------------------------------
    def toggle_quick_look(self) -> None:
        if self.quick_look is not None and self.quick_look.isVisible():
            self.quick_look.close()
            return
        if self.mode() == "grid" and self.grid.hasFocus() and self.grid.current() >= 0:
            self.show_tile(self.grid.current())  # Space on a tile: that image
        if self.view.image().isNull():
            self.window.statusBar().showMessage("No image to show", 3000)
            return
        if self.quick_look is None:
            self.quick_look = QuickLook(self.window)
            self.quick_look.stepRequested.connect(self.step)
            self.quick_look.closed.connect(self._on_quick_look_closed)
        self._mirror()
        self.quick_look.open()

    def _mirror_soon(self) -> None:
        # After the window has set the caption that goes with the new image.
        if self.quick_look is not None and self.quick_look.isVisible():
            QTimer.singleShot(0, self._mirror)

    def _mirror(self) -> None:
        if self.quick_look is not None:
            self.quick_look.show_image(self.view.image(), self.window.imageInfoLabel.text())

    def _on_quick_look_closed(self) -> None:
        self.window.activateWindow()
        if self.mode() == "image":
            self.view.setFocus()

    def toggle_full_screen(self) -> None:
        w = self.window
        if w.isFullScreen():
            w.showMaximized() if self._was_maximized else w.showNormal()
        else:
            self._was_maximized = w.isMaximized()
            w.showFullScreen()
        action = getattr(w, "fullScreenAction", None)
        if action is not None:
            action.setText("Exit Full Screen" if w.isFullScreen() else "Enter Full Screen")
