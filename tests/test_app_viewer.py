"""The image viewer driven like a person would, on the fast stand-in engine: zoom (keys, the zoom
pill, pinch, Ctrl+wheel), pan (drag, wheel, scroll bars) and drag-out, the arrow keys through the
history, Quick Look, full screen, a batch's grid and comparing two images."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QColor, QImage, QKeySequence, QNativeGestureEvent, QPointingDevice, QWheelEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

import app.imageview as imageview_module
from app.compare import differences
from test_app_image_input import fake_window
from test_app_support import TIMEOUT, FakePipeline, _colour, set_spin, type_prompt, wait_ready
from test_app_window import click_history_row

CTRL = Qt.KeyboardModifier.ControlModifier


@pytest.fixture
def window(monkeypatch, qtbot, tmp_path):
    w = fake_window(monkeypatch, qtbot, tmp_path, tmp_path / "data", FakePipeline(), "fake-model")
    w.resize(1200, 800)  # an ordinary window (tests start at the minimum): zooming has room both ways
    yield w
    w.close()


def generate(qtbot, window, prompt: str = "a lighthouse", size: int = 1024, count: int = 1) -> list:
    """Type, set the size and the number of images, click Generate; the results once all are done."""
    set_spin(qtbot, window.widthSpin, size)
    set_spin(qtbot, window.heightSpin, size)
    set_spin(qtbot, window.countSpin, count)
    type_prompt(qtbot, window, prompt)
    results = []
    window.queue.finished.connect(results.append)
    qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: len(results) == count, timeout=TIMEOUT)
    wait_ready(qtbot, window)
    window.queue.finished.disconnect(results.append)
    return results


def add_entries(window, specs: list[dict]) -> list:
    """History entries with real PNG files (as the app writes them), oldest first; each spec
    overrides the request's fields (seed, steps, width, height)."""
    from PIL import Image

    from app.imaging import thumbnail_png
    from app.params import GenerationParams, ModelChoice
    from mlx_flux.metadata import save_png
    from mlx_flux.request import GenerationRequest

    entries = []
    for i, spec in enumerate(specs):
        fields = dict(width=64, height=64, steps=4, guidance=None, seed=1000 + i, model="fake-schnell") | spec
        request = GenerationRequest(spec.get("prompt", "a seeded prompt"), **{k: v for k, v in fields.items()
                                                                              if k != "prompt"})
        image = Image.new("RGB", (request.width, request.height), _colour(request.seed))
        path = window.data_dir.images / "seeded" / f"{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        save_png(image, path, request.to_metadata())
        params = GenerationParams(ModelChoice(window.controls.current_model()), request)
        entries.append(window.history.add(params, path, variant="schnell", created_at=1_700_000_000.0 + i,
                                          thumbnail=thumbnail_png(image)))
    window.refresh_history()
    return entries


def colour_shown(view) -> QColor:
    image = view.image()
    return image.pixelColor(image.width() // 2, image.height() // 2)


def seed_colour(seed: int) -> QColor:
    return QColor(*_colour(seed))


def wheel(widget, delta: int, modifiers=Qt.KeyboardModifier.NoModifier, pos: QPointF | None = None,
          horizontal: bool = False) -> None:
    pos = QPointF(widget.rect().center()) if pos is None else pos
    angle = QPoint(delta, 0) if horizontal else QPoint(0, delta)
    event = QWheelEvent(pos, QPointF(widget.mapToGlobal(pos)), QPoint(), angle, Qt.MouseButton.NoButton,
                        modifiers, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def pinch(widget, value: float, pos: QPointF) -> None:
    """A trackpad pinch as macOS reports it: a ZoomNativeGesture with the change in scale."""
    event = QNativeGestureEvent(Qt.NativeGestureType.ZoomNativeGesture, QPointingDevice.primaryPointingDevice(), 2,
                                pos, pos, QPointF(widget.mapToGlobal(pos)), value, QPointF())
    QApplication.sendEvent(widget, event)


def image_point_under(view, pos: QPointF) -> QPointF:
    """The image pixel under widget point `pos`."""
    rect, size = view.image_rect(), view.content_size()
    return QPointF((pos.x() - rect.left()) / rect.width() * size.width(),
                   (pos.y() - rect.top()) / rect.height() * size.height())


# -- zoom -------------------------------------------------------------------------------------
def test_zoom_with_the_keys_and_the_zoom_pill(qtbot, window):
    generate(qtbot, window)
    view, pill = window.previewView, window.previewView.zoomButton
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=view.rect().center())
    assert view.is_fit() and pill.isVisible() and pill.text().startswith("Fit ")
    fit = view.scale()
    assert fit < 1 and pill.text() == f"Fit {fit * 100:.0f}%"  # 1024 px do not fit the window
    assert view.image_rect().width() <= view.width()

    qtbot.keyClick(view, Qt.Key.Key_1, CTRL)  # Actual Size
    assert view.scale() == 1.0 and pill.text() == "100%" and view.image_rect().width() == 1024
    assert view.is_pannable() and view.hbar.isVisible() and view.vbar.isVisible()
    qtbot.keyClick(view, Qt.Key.Key_Equal, CTRL)  # Zoom In, as typed on a Mac (Cmd+=)
    assert view.scale() == 1.5 and pill.text() == "150%"
    qtbot.keyClick(view, Qt.Key.Key_Minus, CTRL)
    qtbot.keyClick(view, Qt.Key.Key_Minus, CTRL)
    assert pill.text() == "67%"
    qtbot.keyClick(view, Qt.Key.Key_0, CTRL)  # Fit
    assert view.is_fit() and view.scale() == fit and not view.hbar.isVisible()

    qtbot.mouseClick(pill, Qt.MouseButton.LeftButton)  # the pill switches Fit ↔ 100%
    assert pill.text() == "100%"
    qtbot.mouseClick(pill, Qt.MouseButton.LeftButton)
    assert view.is_fit()
    qtbot.mouseDClick(view, Qt.MouseButton.LeftButton, pos=view.rect().center())  # so does a double-click
    assert view.scale() == 1.0


def test_pinch_and_ctrl_wheel_zoom_around_the_pointer(qtbot, window):
    generate(qtbot, window)
    view = window.previewView
    fit = view.scale()
    pointer = view.image_rect().center() + QPointF(40, 30)  # off centre, not near an edge
    under = image_point_under(view, pointer)
    pinch(view, 0.5, pointer)
    assert view.scale() == pytest.approx(fit * 1.5) and not view.is_fit()
    after = image_point_under(view, pointer)
    assert (after.x(), after.y()) == (pytest.approx(under.x(), abs=0.5), pytest.approx(under.y(), abs=0.5))

    before = view.scale()
    wheel(view, 120, CTRL, pointer)  # one notch with Ctrl
    assert view.scale() == pytest.approx(before * 1.25)
    after = image_point_under(view, pointer)
    assert (after.x(), after.y()) == (pytest.approx(under.x(), abs=0.5), pytest.approx(under.y(), abs=0.5))
    wheel(view, -120, CTRL, pointer)
    assert view.scale() == pytest.approx(before)


def test_zoomed_the_image_pans_by_drag_wheel_and_scroll_bars(qtbot, window):
    generate(qtbot, window)
    view = window.previewView
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=view.rect().center())
    qtbot.keyClick(view, Qt.Key.Key_1, CTRL)
    start = view.image_rect().topLeft()
    centre = view.rect().center()
    QTest.mousePress(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre)
    QTest.mouseMove(view, centre + QPoint(30, 20))
    QTest.mouseMove(view, centre + QPoint(60, 40))
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier, centre + QPoint(60, 40))
    moved = view.image_rect().topLeft()
    assert (moved.x() - start.x(), moved.y() - start.y()) == (pytest.approx(60, abs=1), pytest.approx(40, abs=1))

    value = view.vbar.value()
    wheel(view, -120)  # scrolling down shows more of the bottom
    assert view.vbar.value() > value and view.image_rect().top() < moved.y()
    view.hbar.setValue(view.hbar.maximum())  # as dragging the scroll bar to its end does
    assert view.image_rect().right() == pytest.approx(view.width() - 2, abs=1)  # the right edge in view
    view.hbar.setValue(0)
    assert view.image_rect().left() == pytest.approx(2, abs=1)

    # Panning stops at the edges: the image never leaves an empty band in the view.
    for _ in range(40):
        wheel(view, 480)
    assert view.image_rect().top() == pytest.approx(2, abs=1)


class RecordingDrag:
    """Stands in for QDrag: records what a drag-out would carry instead of running a drag loop."""

    started: list = []

    def __init__(self, source) -> None:
        self.source = source

    def setMimeData(self, mime) -> None:  # noqa: N802
        self.mime = mime

    def setPixmap(self, pixmap) -> None:  # noqa: N802
        pass

    def exec(self, action):
        RecordingDrag.started.append(self.mime)
        return action


def drag_on(view, modifiers=Qt.KeyboardModifier.NoModifier) -> None:
    centre = view.rect().center()
    QTest.mousePress(view, Qt.MouseButton.LeftButton, modifiers, centre)
    for step in range(1, 5):
        QTest.mouseMove(view, centre + QPoint(8 * step, 0))
    QTest.mouseRelease(view, Qt.MouseButton.LeftButton, modifiers, centre + QPoint(32, 0))


def test_drag_out_at_fit_pan_when_zoomed_and_alt_drag_out(qtbot, window, monkeypatch):
    RecordingDrag.started = []
    monkeypatch.setattr(imageview_module, "QDrag", RecordingDrag)
    generate(qtbot, window)
    view = window.previewView
    assert "Alt-drag" in view.toolTip()
    drag_on(view)  # at Fit: the image goes out (file and pixels)
    assert len(RecordingDrag.started) == 1
    mime = RecordingDrag.started[0]
    assert mime.hasImage() and Path(mime.urls()[0].toLocalFile()) == window.shown.path

    qtbot.keyClick(view, Qt.Key.Key_1, CTRL)
    left = view.image_rect().left()
    drag_on(view)  # zoomed: a plain drag pans
    assert len(RecordingDrag.started) == 1 and view.image_rect().left() == pytest.approx(left + 32, abs=1)
    drag_on(view, Qt.KeyboardModifier.AltModifier)  # Alt-drag still takes the image out
    assert len(RecordingDrag.started) == 2


def test_previews_keep_the_chosen_zoom(qtbot, window):
    window.queue.worker._pipe.step_delay = 0.2
    generate(qtbot, window)
    view = window.previewView
    qtbot.keyClick(view, Qt.Key.Key_1, CTRL)
    previews = []
    window.queue.preview.connect(lambda image: previews.append(view.is_preview()))
    type_prompt(qtbot, window, "a second lighthouse")
    qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.is_preview(), timeout=TIMEOUT)
    # An 8-pixel preview is laid out as the 1024-pixel image it leads to, at the zoom chosen.
    assert view.image().width() == 8 and view.scale() == 1.0 and view.image_rect().width() == 1024
    assert view.zoomButton.text() == "100%"
    wait_ready(qtbot, window)
    assert not view.is_preview() and view.scale() == 1.0 and view.image_rect().width() == 1024

    qtbot.keyClick(view, Qt.Key.Key_0, CTRL)  # Fit (the default) fits the previews too
    qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: view.is_preview(), timeout=TIMEOUT)
    assert view.is_fit() and view.image_rect().width() <= view.width()
    wait_ready(qtbot, window)


# -- moving through the history ------------------------------------------------------------------
def test_arrow_keys_on_the_image_move_through_the_history(qtbot, window):
    entries = add_entries(window, [{}, {}, {}])  # listed newest first: seeds 1002, 1001, 1000
    click_history_row(qtbot, window, 0)
    view = window.previewView
    assert colour_shown(view) == seed_colour(1002)
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=view.rect().center())
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert window.historyList.currentIndex().row() == 1 and colour_shown(view) == seed_colour(1001)
    assert window.shown.entry_id == entries[1].id
    qtbot.keyClick(view, Qt.Key.Key_Down)
    assert window.historyList.currentIndex().row() == 2 and colour_shown(view) == seed_colour(1000)
    qtbot.keyClick(view, Qt.Key.Key_Down)  # the last entry: it stays
    assert window.historyList.currentIndex().row() == 2
    qtbot.keyClick(view, Qt.Key.Key_Left)
    qtbot.keyClick(view, Qt.Key.Key_Up)
    assert window.historyList.currentIndex().row() == 0 and colour_shown(view) == seed_colour(1002)
    assert view.hasFocus()  # the keys keep working
    assert window.historyList.selectionModel().selectedRows() == [window.historyModel.index(0)]


def test_arrow_keys_keep_the_zoom(qtbot, window):
    add_entries(window, [dict(width=1024, height=1024), dict(width=1024, height=1024)])
    click_history_row(qtbot, window, 0)
    view = window.previewView
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=view.rect().center())
    qtbot.keyClick(view, Qt.Key.Key_1, CTRL)
    wheel(view, -240)
    place = view.image_rect()
    qtbot.keyClick(view, Qt.Key.Key_Right)
    assert colour_shown(view) == seed_colour(1000)
    assert view.scale() == 1.0 and view.image_rect() == place  # the same part of the next image


# -- Quick Look and full screen -----------------------------------------------------------------
def test_space_opens_quick_look_and_arrows_step_in_it(qtbot, window):
    add_entries(window, [{}, {}, {}])
    click_history_row(qtbot, window, 0)
    view = window.previewView
    qtbot.mouseClick(view, Qt.MouseButton.LeftButton, pos=view.rect().center())
    qtbot.keyClick(view, Qt.Key.Key_Space)
    look = window.viewer.quick_look
    assert look is not None and look.isVisible() and look.objectName() == "quickLook"
    assert look.windowFlags() & Qt.WindowType.FramelessWindowHint
    assert look.view.image() == view.image() and "seed 1002" in look.caption.text()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is look)  # it has the keys

    qtbot.keyClick(look.view, Qt.Key.Key_Right)  # next entry: in Quick Look and in the window
    qtbot.waitUntil(lambda: "seed 1001" in look.caption.text())
    assert colour_shown(look.view) == seed_colour(1001) and colour_shown(view) == seed_colour(1001)
    assert window.historyList.currentIndex().row() == 1
    qtbot.keyClick(look.view, Qt.Key.Key_Space)
    assert not look.isVisible()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)  # back to the window, keys and all

    click_history_row(qtbot, window, 1)
    qtbot.keyClick(window.historyList, Qt.Key.Key_Space)  # Space on the history list too
    assert look.isVisible()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is look)
    qtbot.keyClick(look.view, Qt.Key.Key_Escape)
    assert not look.isVisible()


def test_space_in_a_text_field_types_a_space(qtbot, window):
    add_entries(window, [{}])
    click_history_row(qtbot, window, 0)
    type_prompt(qtbot, window, "a red barn")
    assert window.promptEdit.toPlainText() == "a red barn"
    qtbot.keyClicks(window.historySearch, "red barn")
    assert window.historySearch.text() == "red barn"
    assert window.viewer.quick_look is None or not window.viewer.quick_look.isVisible()


def test_full_screen_from_the_view_menu_and_its_shortcut(qtbot, window):
    menus = [a.text().replace("&", "") for a in window.menuBar().actions()]
    assert menus.count("View") == 1 and menus.index("View") < menus.index("Help")
    view_menu = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
    assert window.fullScreenAction in view_menu.actions() and window.zoomActualAction in view_menu.actions()
    shortcut = QKeySequence.keyBindings(QKeySequence.StandardKey.FullScreen)[0]
    assert window.fullScreenAction.text() == "Enter Full Screen"
    qtbot.keyClick(window.previewView, shortcut[0].key(), shortcut[0].keyboardModifiers())
    qtbot.waitUntil(window.isFullScreen)
    assert window.fullScreenAction.text() == "Exit Full Screen"
    qtbot.keyClick(window.previewView, shortcut[0].key(), shortcut[0].keyboardModifiers())
    qtbot.waitUntil(lambda: not window.isFullScreen())
    assert window.fullScreenAction.text() == "Enter Full Screen"

    from app.menus import build_view_actions

    build_view_actions(window)  # a View menu made elsewhere (Edit/Window menus) is reused, not doubled
    assert [a.text() for a in window.menuBar().actions()].count("&View") == 1


# -- the batch grid -------------------------------------------------------------------------------
def test_a_finished_batch_shows_as_a_grid_and_a_click_shows_one(qtbot, window):
    set_spin(qtbot, window.seedSpin, 40)  # seeds 40–43
    results = generate(qtbot, window, "four lighthouses", size=64, count=4)
    grid = window.findChild(type(window.imagePanel.batchGrid), "batchGrid")
    assert grid.isVisible() and not window.previewView.isVisible()
    assert [item.caption for item in grid.items()] == ["seed 40", "seed 41", "seed 42", "seed 43"]
    assert window.imagePanel.gridButton.isVisible() and window.imagePanel.gridButton.isChecked()
    assert grid.title() == "4 images · seeds 40–43 · click one to see it alone"
    # The caption and the image actions are about the last image, highlighted in the grid.
    assert grid.current() == 3 and window.imageInfoLabel.text().startswith("seed 43")

    qtbot.mouseClick(grid, Qt.MouseButton.LeftButton, pos=grid.tile_rect(2).center().toPoint())
    assert window.previewView.isVisible() and not grid.isVisible()
    assert colour_shown(window.previewView) == seed_colour(42) and window.shown.params.seed == 42
    entry = window.selected_entry()
    assert entry is not None and entry.seed == 42  # the history list agrees
    assert not window.imagePanel.gridButton.isChecked()

    qtbot.mouseClick(window.imagePanel.gridButton, Qt.MouseButton.LeftButton)  # back to the grid
    assert grid.isVisible() and window.imagePanel.gridButton.isChecked()
    qtbot.mouseClick(window.imagePanel.gridButton, Qt.MouseButton.LeftButton)
    assert window.previewView.isVisible() and colour_shown(window.previewView) == seed_colour(42)
    assert window.imageInfoLabel.text().startswith("seed 42 · 64×64") and grid.current() == 2

    # A single image afterwards shows alone; the grid of the batch is still a click away.
    generate(qtbot, window, "one more", size=64, count=1)
    assert window.previewView.isVisible() and window.imagePanel.gridButton.isVisible()
    assert len(results) == 4


def test_a_batch_leaves_a_picked_image_in_view(qtbot, window):
    add_entries(window, [{}])
    window.queue.worker._pipe.step_delay = 0.2
    set_spin(qtbot, window.countSpin, 3)
    type_prompt(qtbot, window, "three while I look elsewhere")
    qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.previewView.is_preview(), timeout=TIMEOUT)
    click_history_row(qtbot, window, 0)  # the person picks an image to look at
    wait_ready(qtbot, window)
    assert window.previewView.isVisible() and colour_shown(window.previewView) == seed_colour(1000)
    assert window.imagePanel.gridButton.isVisible() and not window.imagePanel.gridButton.isChecked()
    qtbot.mouseClick(window.imagePanel.gridButton, Qt.MouseButton.LeftButton)  # the batch when they want it
    assert window.imagePanel.batchGrid.isVisible() and len(window.imagePanel.batchGrid.items()) == 3


def test_a_grid_tile_hidden_by_the_search_still_opens_at_full_size(qtbot, window):
    set_spin(qtbot, window.seedSpin, 5)
    generate(qtbot, window, "two big ones", size=1024, count=2)
    grid = window.imagePanel.batchGrid
    assert grid.items()[1].image.width() < 1024  # the tiles hold smaller copies
    qtbot.keyClicks(window.historySearch, "nothing like it")
    assert window.historyModel.rowCount() == 0 and grid.isVisible()
    qtbot.mouseClick(grid, Qt.MouseButton.LeftButton, pos=grid.tile_rect(1).center().toPoint())
    assert window.previewView.isVisible() and window.previewView.image().width() == 1024
    assert window.shown.params.seed == 6 and window.shown.path is not None  # the saved entry, not the tile


def test_the_grid_keys_move_and_open(qtbot, window):
    set_spin(qtbot, window.seedSpin, 7)
    generate(qtbot, window, "three", size=64, count=3)
    grid = window.imagePanel.batchGrid
    assert grid.current() == 2  # the last image, the one the caption is about
    grid.setFocus()
    qtbot.keyClick(grid, Qt.Key.Key_Left)
    qtbot.keyClick(grid, Qt.Key.Key_Return)
    assert window.previewView.isVisible() and window.shown.params.seed == 8
    assert window.previewView.hasFocus()  # the arrow keys now step through the history

    qtbot.mouseClick(window.imagePanel.gridButton, Qt.MouseButton.LeftButton)
    grid.setFocus()
    qtbot.keyClick(grid, Qt.Key.Key_Left)
    qtbot.keyClick(grid, Qt.Key.Key_Space)  # Quick Look of the highlighted tile
    look = window.viewer.quick_look
    assert look.isVisible() and colour_shown(look.view) == seed_colour(7)
    look.close()


# -- several history entries: grid and compare -------------------------------------------------------
def ctrl_click_history_row(qtbot, window, row: int) -> None:
    view = window.historyList
    rect = view.visualRect(window.historyModel.index(row))
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, CTRL, rect.center())


def test_selecting_several_entries_shows_them_in_a_grid(qtbot, window):
    add_entries(window, [{}, {}, {}])
    click_history_row(qtbot, window, 0)
    assert window.previewView.isVisible() and not window.imagePanel.compareButton.isVisible()
    ctrl_click_history_row(qtbot, window, 2)
    qtbot.waitUntil(lambda: window.imagePanel.batchGrid.isVisible())
    assert [item.caption for item in window.imagePanel.batchGrid.items()] == ["seed 1002", "seed 1000"]
    assert window.imagePanel.compareButton.isVisible() and window.compareAction.isEnabled()
    ctrl_click_history_row(qtbot, window, 1)
    assert len(window.imagePanel.batchGrid.items()) == 3 and not window.compareAction.isEnabled()

    # A tile shows its image alone; the selection stays, so Grid comes back to all three.
    grid = window.imagePanel.batchGrid
    qtbot.mouseClick(grid, Qt.MouseButton.LeftButton, pos=grid.tile_rect(1).center().toPoint())
    qtbot.wait(10)  # any deferred page change has run
    assert window.previewView.isVisible() and colour_shown(window.previewView) == seed_colour(1001)
    assert len(window.historyList.selectionModel().selectedRows()) == 3
    qtbot.mouseClick(window.imagePanel.gridButton, Qt.MouseButton.LeftButton)
    assert grid.isVisible()

    click_history_row(qtbot, window, 1)  # one entry again: the image alone
    qtbot.wait(10)
    assert window.previewView.isVisible() and not window.imagePanel.gridButton.isVisible()


def test_compare_two_entries_side_by_side_zoomed_together(qtbot, window):
    add_entries(window, [dict(seed=3, steps=4, width=1024, height=1024), dict(seed=4, steps=8, width=1024, height=1024)])
    click_history_row(qtbot, window, 0)
    ctrl_click_history_row(qtbot, window, 1)
    qtbot.mouseClick(window.imagePanel.compareButton, Qt.MouseButton.LeftButton)
    compare = window.imagePanel.compareView
    assert compare.isVisible() and compare.objectName() == "compareView"
    assert window.imagePanel.compareButton.isChecked() and window.compareAction.isChecked()
    # Newest first: seed 4 on the left; under each, what differs.
    assert compare.leftLabel.text() == "seed 4 · 8 steps" and compare.rightLabel.text() == "seed 3 · 4 steps"
    assert colour_shown(compare.leftView) == seed_colour(4) and colour_shown(compare.rightView) == seed_colour(3)

    left, right = compare.leftView, compare.rightView
    qtbot.mouseClick(left, Qt.MouseButton.LeftButton, pos=left.rect().center())
    qtbot.keyClick(left, Qt.Key.Key_1, CTRL)  # the View menu's Actual Size acts on the comparison
    assert left.scale() == 1.0 and right.scale() == 1.0
    top_left = left.image_rect().topLeft()
    drag_on(right)  # panning either one pans both (the same part of each image, to the pixel)
    assert left.view_state() == right.view_state() and left.image_rect().topLeft() != top_left
    assert same_place(left, right)
    wheel(left, -240)
    assert left.view_state() == right.view_state() and same_place(left, right)

    qtbot.mouseClick(window.imagePanel.compareButton, Qt.MouseButton.LeftButton)
    assert window.previewView.isVisible() and not compare.isVisible()


def same_place(a, b) -> bool:
    """Both views show the same part of their images (views of equal size may differ by a pixel)."""
    ra, rb = a.image_rect(), b.image_rect()
    return abs(ra.left() - rb.left()) <= 1 and abs(ra.top() - rb.top()) <= 1 and ra.size() == rb.size()


def test_compare_needs_two_entries(qtbot, window):
    add_entries(window, [{}, {}])
    click_history_row(qtbot, window, 0)
    assert not window.compareAction.isEnabled() and not window.imagePanel.compareButton.isVisible()
    window.viewer.toggle_compare()  # as a script might: it says what to do
    assert "Select two images" in window.messageLabel.text() and window.previewView.isVisible()


def test_differences_name_only_what_differs():
    from app.params import GenerationParams, ModelChoice
    from mlx_flux.request import GenerationRequest

    def params(**fields):
        base = dict(width=64, height=64, steps=4, guidance=3.5, seed=1, model="m")
        return GenerationParams(ModelChoice("m"), GenerationRequest("a cat", **(base | fields)))

    assert differences(params(), params()) == (["same settings"], ["same settings"])
    assert differences(params(seed=3), params(seed=4, guidance=4.0)) == (["seed 3", "guidance 3.5"],
                                                                         ["seed 4", "guidance 4"])
    ours, theirs = differences(params(width=128), params())
    assert ours == ["128×64"] and theirs == ["64×64"]


def test_an_empty_view_shows_no_zoom_and_keeps_the_zoom_chosen(qtbot):
    view = imageview_module.ImageView()
    qtbot.addWidget(view)
    view.resize(300, 300)
    view.show()
    qtbot.keyClick(view, Qt.Key.Key_Left)  # nothing to step to: no error
    view.zoom_actual()
    wheel(view, 120, CTRL)
    assert view.image_rect().isEmpty() and not view.zoomButton.isVisible()
    view.set_image(QImage(600, 200, QImage.Format.Format_RGB32))
    assert view.zoomButton.isVisible() and view.zoomButton.text() == "100%"
    assert view.image_rect().height() == 200 and view.hbar.isVisible() and not view.vbar.isVisible()


def test_on_a_mac_the_view_menu_leaves_full_screen_to_the_system(qtbot, monkeypatch, tmp_path):
    """macOS adds its own Enter Full Screen to a menu named View: ours would be a second one."""
    import app.menus as menus

    monkeypatch.setattr(menus, "system_adds_full_screen_item", lambda: True)
    w = fake_window(monkeypatch, qtbot, tmp_path, tmp_path / "data", FakePipeline(), "fake-model")
    try:
        view = next(a.menu() for a in w.menuBar().actions() if a.text() == "&View")
        assert w.zoomFitAction in view.actions() and w.fullScreenAction not in view.actions()
        assert not w.fullScreenAction.shortcuts()
    finally:
        w.close()
