"""The history panel driven like a person would: picking an entry only shows it; Use Prompt,
Use Seed, Use Settings and Re-run restore from it when asked, and a different model or
precision is asked for before a reload of many GB. Also the rows' settings line and Find."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QFontMetrics, QImage, QKeySequence, QPainter
from PySide6.QtWidgets import QApplication, QMessageBox, QPushButton, QStyleOptionViewItem

import app.worker as worker_module
from app.historyview import age, summary
from app.params import GenerationParams, ModelChoice
from test_app_support import TIMEOUT, caching_loader, ready_window, set_spin, type_prompt, wait_ready
from test_app_window import click_history_row, drop_file


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    loads: list = []
    monkeypatch.setattr(worker_module, "load_pipeline", caching_loader(loads))
    return loads


@pytest.fixture
def window(qtbot, tmp_path, tiny_schnell):
    w = ready_window(qtbot, tmp_path / "data", tiny_schnell)
    yield w
    w.close()


def add_entry(window, prompt: str, seed: int, quantize: int | None = None, size=(64, 64), steps: int = 4,
              model: str = "schnell", created_at: float = 1_700_000_000.0):
    """A history entry with a real PNG, as the app writes them (made on the current model)."""
    from PIL import Image

    from app.imaging import thumbnail_png
    from mlx_flux.metadata import save_png
    from mlx_flux.request import GenerationRequest

    request = GenerationRequest(prompt, *size, steps=steps, seed=seed, model=model, quantize=quantize)
    image = Image.new("RGB", size, (seed % 256, 90, 160))
    path = window.data_dir.images / "added" / f"{seed}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(image, path, request.to_metadata())
    entry = window.history.add(GenerationParams(ModelChoice(window.controls.current_model(), quantize), request),
                               path, variant="schnell", created_at=created_at, thumbnail=thumbnail_png(image))
    window.refresh_history()
    return entry


class DialogAnswers:
    """Answers each model-switch question with the named button, and keeps what it asked."""

    def __init__(self, qtbot, button: str) -> None:
        self.qtbot, self.button, self.asked = qtbot, button, []
        self._poll()

    def _poll(self) -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox) and box.isVisible():
            self.asked.append((box.objectName(), box.text()))
            self.qtbot.mouseClick(box.findChild(QPushButton, self.button), Qt.MouseButton.LeftButton)
        if len(self.asked) < 5:
            QTimer.singleShot(20, self._poll)


def press(qtbot, widget, sequence: QKeySequence) -> None:
    """Press a key sequence the way this platform spells it (Cmd on a Mac, Ctrl elsewhere)."""
    combination = sequence[0]
    qtbot.keyClick(widget, combination.key(), combination.keyboardModifiers())


# -- picking only looks ------------------------------------------------------------------------
def test_picking_entries_with_the_mouse_and_arrow_keys_only_shows_them(qtbot, window, isolated):
    first = add_entry(window, "an old lighthouse", 501, quantize=8, size=(96, 64), steps=3)
    second = add_entry(window, "a paper boat", 502, quantize=8, created_at=1_700_000_100.0)
    type_prompt(qtbot, window, "my words")
    assert window.randomSeedCheck.isChecked()
    loads, size = len(isolated), (window.widthSpin.value(), window.heightSpin.value())

    click_history_row(qtbot, window, 0)  # the newest: "a paper boat"
    assert window.shown.entry_id == second.id and "seed 502" in window.imageInfoLabel.text()
    qtbot.keyClick(window.historyList, Qt.Key.Key_Down)  # on to the lighthouse

    # The controls are the person's: no prompt overwritten, no seed locked, no 8-bit reload.
    assert window.promptEdit.toPlainText() == "my words"
    assert window.randomSeedCheck.isChecked()
    assert (window.widthSpin.value(), window.heightSpin.value()) == size and window.stepsSlider.value() == 4
    assert window.controls.quantize() is None and window.queue.loading is None and len(isolated) == loads
    assert window.model_info.choice.quantize is None

    # The image is in view, with its settings in the caption and its prompt in the caption's tooltip.
    assert window.shown.entry_id == first.id and window.previewView.image().width() == 96
    assert "seed 501" in window.imageInfoLabel.text() and "3 steps" in window.imageInfoLabel.text()
    assert "an old lighthouse" in window.imageInfoLabel.toolTip()


def test_use_prompt_replaces_the_prompt_and_undo_brings_the_typed_one_back(qtbot, window):
    add_entry(window, "a prompt from the history", 7)
    type_prompt(qtbot, window, "my words")
    click_history_row(qtbot, window, 0)
    qtbot.mouseClick(window.historyPanel.usePromptButton, Qt.MouseButton.LeftButton)
    assert window.promptEdit.toPlainText() == "a prompt from the history"
    assert window.randomSeedCheck.isChecked()  # the prompt only

    window.promptEdit.setFocus()
    press(qtbot, window.promptEdit, QKeySequence(QKeySequence.StandardKey.Undo))
    assert window.promptEdit.toPlainText() == "my words"


def test_use_settings_is_undoable_for_the_prompt_too(qtbot, window):
    add_entry(window, "restored words", 8)
    type_prompt(qtbot, window, "my words")
    click_history_row(qtbot, window, 0)
    qtbot.mouseClick(window.historyPanel.useSettingsButton, Qt.MouseButton.LeftButton)
    assert window.promptEdit.toPlainText() == "restored words" and window.seedSpin.value() == 8
    window.promptEdit.setFocus()
    press(qtbot, window.promptEdit, QKeySequence(QKeySequence.StandardKey.Undo))
    assert window.promptEdit.toPlainText() == "my words"


def test_use_seed_locks_the_seed_only(qtbot, window):
    add_entry(window, "seeded", 4321, size=(96, 64))
    type_prompt(qtbot, window, "my words")
    click_history_row(qtbot, window, 0)
    qtbot.mouseClick(window.historyPanel.useSeedButton, Qt.MouseButton.LeftButton)
    assert window.seedSpin.value() == 4321 and not window.randomSeedCheck.isChecked()
    assert window.promptEdit.toPlainText() == "my words" and window.widthSpin.value() == 64


def test_double_click_and_enter_are_use_settings(qtbot, window):
    add_entry(window, "double-clicked", 11, size=(96, 64))
    type_prompt(qtbot, window, "my words")
    view = window.historyList
    centre = view.visualRect(window.historyModel.index(0)).center()
    qtbot.mouseClick(view.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    qtbot.mouseDClick(view.viewport(), Qt.MouseButton.LeftButton, pos=centre)
    assert window.promptEdit.toPlainText() == "double-clicked" and window.widthSpin.value() == 96

    type_prompt(qtbot, window, "my words")
    set_spin(qtbot, window.widthSpin, 64)
    view.setFocus()
    qtbot.keyClick(view, Qt.Key.Key_Return)
    assert window.promptEdit.toPlainText() == "double-clicked" and window.widthSpin.value() == 96


def test_the_actions_are_in_the_menus_and_the_context_menu_without_clashing_shortcuts(qtbot, window):
    add_entry(window, "menu", 3)
    names = ["usePromptAction", "useSeedAction", "useSettingsAction"]
    actions = [getattr(window, name) for name in names]
    assert [a.objectName() for a in actions] == names
    assert all(a in window.historyList.actions() for a in actions)
    assert not any(a.isEnabled() for a in actions)  # nothing selected yet
    click_history_row(qtbot, window, 0)
    assert all(a.isEnabled() for a in actions)
    in_menus = {a for menu in window.menuBar().actions() if menu.menu() for a in menu.menu().actions()}
    assert set(actions) <= in_menus

    taken: dict[str, str] = {}
    for action in window.findChildren(type(actions[0])):
        if action.shortcutContext() != Qt.ShortcutContext.WindowShortcut:
            continue
        for sequence in action.shortcuts():
            key = sequence.toString()
            assert taken.setdefault(key, action.text()) == action.text(), f"{key} is taken twice"

    type_prompt(qtbot, window, "my words")
    press(qtbot, window.promptEdit, window.usePromptAction.shortcut())
    assert window.promptEdit.toPlainText() == "menu"


# -- a different model or precision is asked for ----------------------------------------------
@pytest.mark.parametrize("answer", ["keepModelButton", "switchModelButton"])
def test_use_settings_asks_before_switching_precision(qtbot, window, isolated, answer):
    add_entry(window, "made at 8-bit", 909, quantize=8, size=(96, 64), steps=3)
    type_prompt(qtbot, window, "my words")
    click_history_row(qtbot, window, 0)
    loads = len(isolated)
    answers = DialogAnswers(qtbot, answer)
    if answer == "switchModelButton":
        with qtbot.waitSignal(window.queue.modelReady, timeout=TIMEOUT):
            qtbot.mouseClick(window.historyPanel.useSettingsButton, Qt.MouseButton.LeftButton)
        wait_ready(qtbot, window)
    else:
        qtbot.mouseClick(window.historyPanel.useSettingsButton, Qt.MouseButton.LeftButton)
    (name, text), = answers.asked
    assert name == "confirmModelSwitchBox"
    name_of_model = Path(window.controls.current_model()).name
    assert text.startswith(f"This image was made with {name_of_model} 8-bit; switch model? (loads ")
    assert text.endswith(("MB)", "GB)"))
    # Either way the rest of the settings are applied.
    assert window.promptEdit.toPlainText() == "made at 8-bit"
    assert (window.widthSpin.value(), window.heightSpin.value(), window.stepsSlider.value()) == (96, 64, 3)
    assert window.seedSpin.value() == 909 and not window.randomSeedCheck.isChecked()
    if answer == "keepModelButton":
        assert window.controls.quantize() is None and len(isolated) == loads and window.queue.loading is None
        assert window.model_info.choice.quantize is None
    else:
        assert window.controls.quantize() == 8 and window.model_info.choice.quantize == 8


def test_rerun_on_the_current_model_when_the_person_keeps_it(qtbot, window, isolated):
    entry = add_entry(window, "again, at full precision", 77, quantize=8, steps=2)
    click_history_row(qtbot, window, 0)
    loads = len(isolated)
    answers = DialogAnswers(qtbot, "keepModelButton")
    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT) as blocker:
        qtbot.mouseClick(window.rerunButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert [name for name, _ in answers.asked] == ["confirmModelSwitchBox"]
    made = blocker.args[0].params
    assert made.choice.quantize is None and made.seed == entry.seed and made.prompt == entry.prompt
    assert len(isolated) == loads  # no 8-bit load


def test_a_dropped_image_of_another_model_asks_before_switching(qtbot, window, tmp_path, tiny_schnell):
    from PIL import Image

    from mlx_flux.metadata import save_png

    made = tmp_path / "dev.png"
    save_png(Image.new("RGB", (64, 64)), made, dict(prompt="made with dev", seed=9, steps=20, guidance=4.0,
                                                    width=64, height=64, model="black-forest-labs/FLUX.1-dev",
                                                    version="0.1.0"))
    answers = DialogAnswers(qtbot, "keepModelButton")
    assert drop_file(window, made)
    assert [name for name, _ in answers.asked] == ["confirmModelSwitchBox"]
    assert "FLUX.1-dev (full precision); switch model? (loads " in answers.asked[0][1]
    assert window.controls.current_model() == str(tiny_schnell)  # kept
    assert window.promptEdit.toPlainText() == "made with dev" and window.seedSpin.value() == 9


@pytest.mark.parametrize("answer", ["keepModelButton", "switchModelButton"])
def test_a_dropped_8_bit_image_restores_its_precision_when_asked(qtbot, window, isolated, answer):
    """Bug 9: the PNG records the precision; dropping an 8-bit image on a full-precision window
    asks for 8-bit (it used to restore as full precision without a word)."""
    entry = add_entry(window, "made at 8-bit", 808, quantize=8, size=(96, 64), steps=3)
    other = entry.image_path.with_name("copy.png")  # as if exported and dropped back
    other.write_bytes(entry.image_path.read_bytes())
    assert window.controls.quantize() is None
    answers = DialogAnswers(qtbot, answer)
    if answer == "switchModelButton":
        with qtbot.waitSignal(window.queue.modelReady, timeout=TIMEOUT):
            assert drop_file(window, other)
        wait_ready(qtbot, window)
    else:
        assert drop_file(window, other)
    (name, text), = answers.asked
    assert name == "confirmModelSwitchBox" and " 8-bit; switch model?" in text
    assert window.promptEdit.toPlainText() == "made at 8-bit" and window.seedSpin.value() == 808
    assert window.controls.quantize() == (8 if answer == "switchModelButton" else None)
    assert window.model_info.choice.quantize == window.controls.quantize()


# -- the rows and the search -------------------------------------------------------------------
class RecordingPainter(QPainter):
    """A painter that keeps the text it is asked to draw (the delegate's calls are Python calls)."""

    def __init__(self, device) -> None:
        super().__init__(device)
        self.texts: list[str] = []

    def drawText(self, *args) -> None:  # noqa: N802
        self.texts.extend(a for a in args if isinstance(a, str))
        super().drawText(*args)


def painted_row(window, row: int) -> tuple[list[str], QStyleOptionViewItem]:
    """The texts the history delegate draws for `row`, and the option it was given."""
    view = window.historyList
    index = window.historyModel.index(row)
    option = QStyleOptionViewItem()
    option.initFrom(view)
    option.rect, option.widget = view.visualRect(index), view
    image = QImage(view.viewport().size(), QImage.Format.Format_ARGB32)
    painter = RecordingPainter(image)
    view.itemDelegate().paint(painter, option, index)
    painter.end()
    return painter.texts, option


def test_a_row_with_long_settings_keeps_its_seed_and_age(qtbot, window):
    now = time.time()
    entry = add_entry(window, "a very long prompt about a lighthouse on a cliff at dusk " * 4, 123456789,
                      model="FLUX.1-Kontext-dev-finetuned-on-a-very-long-name", created_at=now - 300)
    # The history at the width the window gives it on a laptop screen (the test screen is smaller).
    window.resize(1320, 820)
    window.splitter.setSizes([320, 680, 320])
    assert window.historyPanel.width() == 320
    texts, option = painted_row(window, 0)
    drawn = " ".join(texts)
    assert f"seed {entry.seed}" in drawn and age(entry.created_at) in drawn  # "5 min ago"
    # ... though the whole settings line is far wider than the row: the rest was cut to fit
    whole = f"{summary(entry)} · {age(entry.created_at)}"
    assert QFontMetrics(option.font).horizontalAdvance(whole) > option.rect.width() and "…" in drawn


def test_find_puts_the_cursor_in_the_history_search(qtbot, window):
    window.promptEdit.setFocus()
    window.activateWindow()
    press(qtbot, window.promptEdit, QKeySequence(QKeySequence.StandardKey.Find))
    assert window.historySearch.hasFocus()
    qtbot.keyClicks(window.historySearch, "fox")
    assert window.historySearch.text() == "fox" and window.promptEdit.toPlainText() == ""


def test_switch_question_names_the_size_of_a_hub_model():
    from app.modelswitch import question

    text = question(ModelChoice("black-forest-labs/FLUX.1-dev", 8))
    assert text == "This image was made with FLUX.1-dev 8-bit; switch model? (loads 18 GB)"
    assert question(ModelChoice("black-forest-labs/FLUX.1-dev")).endswith("(loads 34 GB)")

