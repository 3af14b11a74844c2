"""The window's layout as a person meets it: it fits half a 13-inch screen with nothing cut,
its side panels can be hidden (and stay hidden), every control explains itself, slider values
can be typed, and the text field with the focus shows it."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QApplication,
    QAbstractButton, QAbstractSlider, QAbstractSpinBox, QComboBox, QLineEdit, QPlainTextEdit, QScrollBar, QWidget,
)

import app.modelsetup as modelsetup
import app.worker as worker_module
from test_app_support import TIMEOUT, FakePipeline, open_window, set_spin, type_prompt, wait_ready
from test_app_window import seed_history

HALF_13_INCH = 720  # a 1440-point-wide MacBook screen, tiled in halves


def fake_hub_loader(choice, progress):
    """Hub models load as stand-ins of their variant (nothing is downloaded)."""
    variant = "schnell" if "schnell" in choice.source.lower() else "dev"
    progress("Loading fake", 0.5)
    return FakePipeline(variant=variant, model_name=choice.source.split("/")[-1])


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(worker_module, "load_pipeline", fake_hub_loader)
    monkeypatch.setattr(modelsetup, "on_disk", lambda repo: True)  # as if downloaded: the loader stands in


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def window(qtbot, data_dir):
    _, w = open_window(qtbot, data_dir)
    yield w
    w.close()


def controls_of(window) -> list[QWidget]:
    kinds = (QAbstractButton, QAbstractSlider, QAbstractSpinBox, QComboBox, QLineEdit, QPlainTextEdit)
    found = []
    for widget in window.findChildren(QWidget):
        if not isinstance(widget, kinds) or isinstance(widget, QScrollBar) or not widget.isVisibleTo(window):
            continue
        if isinstance(widget, QLineEdit) and isinstance(widget.parent(), (QAbstractSpinBox, QComboBox)):
            continue  # the text part of a spin box or combo box: its owner carries the tooltip
        if widget.objectName() == "qt_menubar_ext_button":
            continue
        found.append(widget)
    return found


def visible_rect(widget: QWidget, window) -> QRect:
    return QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())


def test_the_minimum_window_fits_half_a_small_laptop_screen_with_nothing_cut(qtbot, window):
    seed_history(window, ["a fox in the snow, very long prompt that wraps over the history row " * 2,
                          "a lighthouse at dusk"])
    # An image in view, with its long line of settings, and a message above it.
    window.choose_model("black-forest-labs/FLUX.1-dev")
    wait_ready(qtbot, window)
    type_prompt(qtbot, window, "a lighthouse at dusk")
    set_spin(qtbot, window.widthSpin, 64)
    set_spin(qtbot, window.heightSpin, 64)
    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert "guidance" in window.imageInfoLabel.text()
    window.show_message("The prompt is longer than the model reads; its end was ignored.", "info")
    hint = window.minimumSizeHint()
    assert hint.width() <= 800
    window.resize(hint)
    qtbot.waitUntil(lambda: window.width() == hint.width())
    for spin in (window.widthSpin, window.heightSpin, window.seedSpin, window.countSpin,
                 window.controls.stepsValueSpin, window.controls.guidanceValueSpin):
        assert spin.width() >= spin.sizeHint().width(), f"{spin.objectName()} shows “{spin.text()}” cut"
    assert window.historyList.horizontalScrollBar().maximum() == 0  # rows fit: no sideways scrolling
    buttons = (window.reuseSeedButton, window.useAsInputButton, window.copyImageButton, window.exportButton,
               window.revealButton, window.rerunButton, window.copyPromptButton, window.deleteButton,
               window.generateButton, window.cancelButton)
    for button in buttons:
        assert button.width() >= button.minimumSizeHint().width(), f"{button.text()} is cut"
    # The longest progress text wraps rather than running out of the panel.
    label = window.progressLabel
    label.setText("Images 10–12 of 12 · step 27/28 · 11 min 59 s · about 12 min 00 s left")
    qtbot.waitUntil(lambda: label.height() >= label.heightForWidth(label.width()))
    assert visible_rect(window.imagePanel, window).contains(visible_rect(label, window))
    for widget in controls_of(window):
        panel = next(p for p in (window.controls, window.imagePanel, window.historyPanel) if p.isAncestorOf(widget))
        outer, inner = visible_rect(panel, window), visible_rect(widget, window)
        if panel is window.controls:  # the controls scroll vertically (a test below): sideways, nothing is cut
            assert outer.left() <= inner.left() and inner.right() <= outer.right(), \
                f"{widget.objectName()} sticks out of its panel"
            continue
        assert outer.contains(inner), f"{widget.objectName()} sticks out of its panel"


def test_a_long_queue_never_makes_the_window_taller_than_a_small_laptop_screen(qtbot, window):
    """A 1280×800 MacBook leaves a window about 750 px; the controls with a queue and LoRAs are
    taller than that, so they scroll instead of growing the window (it grew to 790 before)."""
    controls = window.controls
    controls.queueLabel.setVisible(True)
    window.queueList.setVisible(True)
    for i in range(6):
        window.queueList.addItem(f"seed {i}")
    qtbot.wait(20)
    assert controls.scrollArea.widget().minimumSizeHint().height() > 700  # taller than the room
    hint = window.minimumSizeHint()
    assert hint.height() <= 700
    window.resize(hint.width() + 200, 700)
    qtbot.waitUntil(lambda: window.height() == 700)
    bar = controls.scrollArea.verticalScrollBar()
    assert bar.isVisible() and bar.maximum() > 0
    # Scrolling (the wheel, as a person does) brings the queue into view.
    from PySide6.QtCore import QPointF
    from PySide6.QtGui import QWheelEvent
    viewport = controls.scrollArea.viewport()
    centre = QPointF(viewport.rect().center())
    for _ in range(20):
        QApplication.sendEvent(viewport, QWheelEvent(centre, viewport.mapToGlobal(centre), QPoint(0, 0),
                                                     QPoint(0, -120), Qt.MouseButton.NoButton,
                                                     Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase,
                                                     False))
    assert bar.value() == bar.maximum()
    assert visible_rect(controls, window).contains(visible_rect(window.queueList, window))


def test_the_side_panels_hide_and_stay_hidden_after_a_relaunch(qtbot, window, data_dir):
    image_width = window.imagePanel.width()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_1, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.AltModifier)
    assert window.controls.isHidden()
    assert window.toggleControlsAction.text() == "Show Controls"
    window.toggleHistoryAction.trigger()  # View > Hide History
    assert window.historyPanel.isHidden()
    qtbot.waitUntil(lambda: window.imagePanel.width() > image_width)  # the image has the room
    assert window.minimumSizeHint().width() < HALF_13_INCH / 2 + 100
    window.close()

    _, again = open_window(qtbot, data_dir)
    try:
        assert again.controls.isHidden() and again.historyPanel.isHidden()
        assert again.toggleControlsAction.text() == "Show Controls"
        assert again.toggleHistoryAction.text() == "Show History"
        again.toggleControlsAction.trigger()
        again.toggleHistoryAction.trigger()
        assert again.toggleHistoryAction.text() == "Hide History"
        qtbot.waitUntil(lambda: again.controls.width() >= again.controls.minimumSizeHint().width()
                        and again.historyPanel.width() >= again.historyPanel.minimumWidth())
        assert again.controls.isVisible() and again.historyPanel.isVisible()
    finally:
        again.close()
    _, third = open_window(qtbot, data_dir)
    assert not third.controls.isHidden() and not third.historyPanel.isHidden()
    third.close()


def test_hiding_the_panel_with_the_focus_leaves_the_keyboard_somewhere_useful(qtbot, window):
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    window.promptEdit.setFocus()
    window.toggleControlsAction.trigger()
    assert window.focusWidget() is not None and window.focusWidget().isVisible()


def test_every_control_has_a_tooltip(window):
    found = controls_of(window)
    assert len(found) > 25
    missing = [f"{type(w).__name__} {w.objectName() or getattr(w, 'text', lambda: '')()}"
               for w in found if not w.toolTip().strip()]
    assert not missing


def test_steps_and_guidance_can_be_typed_and_dragged(qtbot, window):
    c = window.controls
    window.choose_model("black-forest-labs/FLUX.1-dev")  # a model with guidance (not loaded: a hub model)
    assert c.guidanceValueSpin.isEnabled()
    set_spin(qtbot, c.stepsValueSpin, 12)
    assert window.stepsSlider.value() == 12
    c.guidanceValueSpin.setFocus()
    c.guidanceValueSpin.selectAll()
    qtbot.keyClicks(c.guidanceValueSpin, "4.5")
    qtbot.keyClick(c.guidanceValueSpin, Qt.Key.Key_Return)
    assert window.guidanceSlider.value() == 45
    window.stepsSlider.setFocus()
    qtbot.keyClick(window.stepsSlider, Qt.Key.Key_Right)  # the slider moves the number
    assert c.stepsValueSpin.value() == 13
    window.guidanceSlider.setFocus()
    qtbot.keyClick(window.guidanceSlider, Qt.Key.Key_Left)
    assert c.guidanceValueSpin.text() == "4.4"
    # Typed and not confirmed, then straight to Generate: the typed value counts.
    c.stepsValueSpin.setFocus()
    c.stepsValueSpin.selectAll()
    qtbot.keyClicks(c.stepsValueSpin, "20")
    assert c.params().request.steps == 20 and window.stepsSlider.value() == 20
    # A typed value above the slider's range stops at its end (as the slider does).
    set_spin(qtbot, c.stepsValueSpin, min(c.stepsValueSpin.maximum(), 999))
    assert window.stepsSlider.value() == window.stepsSlider.maximum()


def test_a_model_without_guidance_shows_no_guidance_value(qtbot, window):
    c = window.controls
    window.choose_model("black-forest-labs/FLUX.1-schnell")
    assert not c.guidanceValueSpin.isEnabled() and c.guidanceValueSpin.text() == "—"
    assert c.params().request.guidance is None
    window.choose_model("black-forest-labs/FLUX.1-dev")
    assert c.guidanceValueSpin.isEnabled() and c.guidanceValueSpin.text() == "3.5"
    assert c.params().request.guidance == 3.5


def test_the_focused_text_field_shows_a_focus_ring(qtbot, window):
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    highlight = window.promptEdit.palette().color(QPalette.ColorRole.Highlight)

    def edge(widget: QWidget):
        """The colour of the field's two outermost columns, if they are one."""
        image = widget.grab().toImage()
        colours = {image.pixelColor(x, widget.height() // 2).name() for x in (0, 1)}
        return colours.pop() if len(colours) == 1 else None

    for field in (window.promptEdit, window.historySearch):
        window.seedSpin.setFocus()
        qtbot.waitUntil(lambda: not field.hasFocus())
        assert edge(field) != highlight.name()
        qtbot.mouseClick(field.viewport() if isinstance(field, QPlainTextEdit) else field, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(field.hasFocus)
        assert edge(field) == highlight.name(), field.objectName()


def test_switching_to_dark_mode_while_open_repaints_every_control(qtbot, window):
    """The appearance can change while the app runs (macOS's automatic dark mode): buttons, combo
    boxes and the text fields all take the new palette (a window-wide style sheet once kept them
    light), and the focus ring still shows."""
    from PySide6.QtGui import QColor
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance()
    before = app.palette()
    dark = QPalette(before)
    for role, colour in ((QPalette.ColorRole.Window, "#2b2b2d"), (QPalette.ColorRole.Button, "#3a3a3c"),
                         (QPalette.ColorRole.Base, "#1e1e1f"), (QPalette.ColorRole.Text, "#e6e6e6"),
                         (QPalette.ColorRole.ButtonText, "#e6e6e6"), (QPalette.ColorRole.WindowText, "#e6e6e6")):
        dark.setColor(role, QColor(colour))
    try:
        app.setPalette(dark)
        qtbot.wait(50)
        for widget in (window.generateButton, window.modelCombo, window.seedSpin):
            assert widget.palette().color(QPalette.ColorRole.Button).name() == "#3a3a3c", widget.objectName()
        for field in (window.promptEdit, window.historySearch):
            image = field.grab().toImage()
            inside = image.pixelColor(field.width() - 8, field.height() // 2)  # past any text
            assert inside.lightness() < 60, (field.objectName(), inside.name())  # dark, as the base
    finally:
        app.setPalette(before)


def test_a_fresh_window_says_the_seed_is_random_not_0(qtbot, window):
    assert window.randomSeedCheck.isChecked() and window.seedSpin.text() == "random"
    qtbot.mouseClick(window.randomSeedCheck, Qt.MouseButton.LeftButton)  # lock it: now 0 is the seed
    qtbot.waitUntil(lambda: window.seedSpin.text() == "0")
    qtbot.mouseClick(window.randomSeedCheck, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: window.seedSpin.text() == "random")
    window.seedSpin.selectAll()
    qtbot.keyClicks(window.seedSpin, "42")  # typing a seed locks it
    assert window.seedSpin.value() == 42 and not window.randomSeedCheck.isChecked()
