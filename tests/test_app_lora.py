"""The LoRA panel driven like a person would: adding LoRAs (file dialog, drop, library folder),
scales and switches, generating with them on the real tiny model, restoring them from the
history, and a LoRA that fails."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

import app.loracontroller as loracontroller_module
import app.worker as worker_module
import lora_files
from app.jobs import batch_key
from app.params import GenerationParams, LoraChoice, ModelChoice
from mlx_flux.lora_info import lora_info
from mlx_flux.metadata import read_request, save_png
from mlx_flux.request import GenerationRequest, LoraRef
from test_app_support import (TIMEOUT, FakePipeline, _PIPELINES, caching_loader, fake_loader, ready_window,
                              set_spin, type_prompt, wait_ready)
from test_app_window import drop_file, generate, use_settings_of_row

# The tiny model's sizes (tests/tiny_models.py), for LoRAs that fit it.
DIMS = lora_files.Dims(hidden=32, mlp_ratio=4, in_channels=64, context=32, vec=24, depth=2, depth_single=2,
                       clip_hidden=24, clip_layers=2, clip_mlp=48)


def write_lora(path: Path, seed: int = 1, metadata: dict[str, str] | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    targets = [*lora_files.flux_targets(DIMS, guidance=False), *lora_files.clip_targets(DIMS)]  # schnell: no guidance_in
    return lora_files.write_kohya(path, DIMS, lora_files.random_description(DIMS, seed=seed, targets=targets),
                                  metadata=metadata)


def write_broken(path: Path) -> Path:
    """A readable safetensors file that is not a FLUX.1 LoRA (an SDXL one's keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return lora_files.write_raw(path, {
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": np.zeros((2, 8), np.float32),
        "lora_unet_down_blocks_0_attentions_0_proj_in.lora_up.weight": np.zeros((8, 2), np.float32)})


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def pick_files(monkeypatch, *paths: Path) -> None:
    monkeypatch.setattr(QFileDialog, "getOpenFileNames",
                        staticmethod(lambda *a, **k: ([str(p) for p in paths], "LoRA (*.safetensors)")))


def choose_from_library(qtbot, combo, text: str) -> None:
    """Open the library list, move to `text` with the arrow keys and press Return."""
    combo.setFocus()
    combo.showPopup()
    view = combo.view()
    target = combo.findText(text)
    assert target > 0, text
    for _ in range(target):
        qtbot.keyClick(view, Qt.Key.Key_Down)
    assert view.currentIndex().row() == target
    qtbot.keyClick(view, Qt.Key.Key_Return)


def lock_seed(qtbot, window, seed: int) -> None:
    set_spin(qtbot, window.seedSpin, seed)
    assert not window.randomSeedCheck.isChecked()


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def real(monkeypatch, qtbot, data_dir, tiny_schnell):
    """A window on the real tiny model; the pipeline's set_loras calls recorded."""
    monkeypatch.setenv("XDG_DATA_HOME", str(data_dir.parent / "xdg"))
    loads: list = []
    monkeypatch.setattr(worker_module, "load_pipeline", caching_loader(loads))
    window = ready_window(qtbot, data_dir, tiny_schnell)
    pipe = window.queue.worker._pipe
    calls: list = []
    real_set = type(pipe).set_loras

    def spy(self, loras):
        calls.append([(str(p), float(s)) for p, s in loras])
        return real_set(self, loras)

    monkeypatch.setattr(type(pipe), "set_loras", spy)
    yield window, loads, calls
    window.close()
    for cached in _PIPELINES.values():  # the next test's window gets this pipeline: no LoRAs on it
        if cached._loras:
            real_set(cached, [])


@pytest.fixture
def fake(monkeypatch, qtbot, data_dir, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    pipe = FakePipeline()
    loads: list = []
    monkeypatch.setattr(worker_module, "load_pipeline", fake_loader(pipe, loads))
    model = tmp_path / "fake-model"
    model.mkdir()
    window = ready_window(qtbot, data_dir, model)
    yield window, pipe, loads
    window.close()


# -- the real engine ------------------------------------------------------------------------
def test_lora_from_the_file_dialog_changes_the_image_and_switches_without_reloading(qtbot, real, monkeypatch,
                                                                                      data_dir):
    window, loads, calls = real
    lora = write_lora(data_dir.parent / "elsewhere" / "style.safetensors")
    type_prompt(qtbot, window, "a lighthouse")
    lock_seed(qtbot, window, 7)
    base = generate(qtbot, window)
    assert calls == [] and base.request.loras == ()

    pick_files(monkeypatch, lora)
    qtbot.mouseClick(window.addLoraButton, Qt.MouseButton.LeftButton)
    assert window.loraList.count() == 1
    row = window.loraPanel.rows()[0]
    assert row.is_enabled() and row.scale() == 1.0
    messages: list = []
    window.queue.loadProgress.connect(lambda m, f: messages.append(m))
    with_lora = generate(qtbot, window)
    assert "Applying LoRAs…" in messages
    assert calls == [[(str(lora), 1.0)]]
    fingerprint = lora_info(lora).fingerprint
    assert read_request(with_lora.saved_path).loras == (LoraRef("style.safetensors", fingerprint, 1.0),)
    assert not np.array_equal(pixels(with_lora.saved_path), pixels(base.saved_path))
    assert "LoRA style 1" in window.imageInfoLabel.text()
    assert "LoRA style 1" in window.historyModel.index(0).data(Qt.ItemDataRole.ToolTipRole)
    loaded = len(loads)

    # The same settings again: nothing to apply.
    generate(qtbot, window)
    assert len(calls) == 1

    # A new scale, typed: applied at the next generation, no model reload.
    set_spin_float(qtbot, row.scaleSpin, 0.5)
    assert row.scaleSlider.value() == 10
    half = generate(qtbot, window)
    assert calls[-1] == [(str(lora), 0.5)] and len(loads) == loaded
    assert read_request(half.saved_path).loras == (LoraRef("style.safetensors", fingerprint, 0.5),)
    assert not np.array_equal(pixels(half.saved_path), pixels(with_lora.saved_path))

    # Switched off: the base image exactly.
    qtbot.mouseClick(row.enableCheck, Qt.MouseButton.LeftButton)
    assert not row.is_enabled()
    off = generate(qtbot, window)
    assert calls[-1] == [] and len(loads) == loaded
    assert read_request(off.saved_path).loras == ()
    assert np.array_equal(pixels(off.saved_path), pixels(base.saved_path))


def set_spin_float(qtbot, spin, value: float) -> None:
    spin.setFocus()
    spin.selectAll()
    qtbot.keyClicks(spin, f"{value:.2f}")
    qtbot.keyClick(spin, Qt.Key.Key_Return)
    assert spin.value() == pytest.approx(value)


def test_restore_from_history_finds_the_lora_after_a_rename(qtbot, real, monkeypatch, data_dir):
    window, loads, calls = real
    library = data_dir / "loras"
    lora = write_lora(library / "style.safetensors", seed=2)
    type_prompt(qtbot, window, "a harbour")
    lock_seed(qtbot, window, 11)
    window.lora_controller.refresh_library()
    choose_from_library(qtbot, window.loraPanel.loraLibraryCombo, "style")
    assert [r.path for r in window.loraPanel.rows()] == [str(lora)]
    made = generate(qtbot, window)
    set_spin_float(qtbot, window.loraPanel.rows()[0].scaleSpin, -0.25)
    generate(qtbot, window)
    assert calls[-1] == [(str(lora), -0.25)]

    # Renamed in the library, and the panel emptied: the history entry still finds it.
    renamed = lora.rename(library / "renamed.safetensors")
    window.loraPanel.remove_selected()
    assert window.loraList.count() == 0
    use_settings_of_row(qtbot, window, 1)  # the image made at scale 1
    rows = window.loraPanel.rows()
    assert [(r.path, r.scale(), r.is_enabled()) for r in rows] == [(str(renamed), 1.0, True)]
    assert not window.messageBar.isVisible()
    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT) as blocker:
        qtbot.mouseClick(window.rerunButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert calls[-1] == [(str(renamed), 1.0)]
    assert np.array_equal(pixels(blocker.args[0].saved_path), pixels(made.saved_path))


def test_a_broken_lora_is_marked_and_the_next_generation_works(qtbot, real, monkeypatch, data_dir):
    window, loads, calls = real
    good = write_lora(data_dir.parent / "loras" / "good.safetensors", seed=3)
    broken = write_broken(data_dir.parent / "loras" / "broken.safetensors")
    pick_files(monkeypatch, good, broken)
    qtbot.mouseClick(window.addLoraButton, Qt.MouseButton.LeftButton)
    assert window.loraList.count() == 2
    type_prompt(qtbot, window, "a mill")
    loaded = len(loads)
    with qtbot.waitSignal(window.queue.failed, timeout=TIMEOUT):
        qtbot.mouseClick(window.generateButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    text = window.messageLabel.text()
    assert window.messageBar.isVisible() and "\n" not in text
    assert "broken.safetensors" in text and "SDXL" in text
    good_row, broken_row = window.loraPanel.rows()
    assert broken_row.error and not broken_row.is_enabled() and not broken_row.statusIcon.isHidden()
    assert "SDXL" in broken_row.toolTip()
    assert good_row.error is None and good_row.is_enabled()
    assert window.queue.worker._pipe is not None and window.historyModel.rowCount() == 0

    result = generate(qtbot, window)
    assert calls[-1] == [(str(good), 1.0)] and len(loads) == loaded
    assert [ref.name for ref in read_request(result.saved_path).loras] == ["good.safetensors"]
    assert window.historyModel.rowCount() == 1


# -- the panel with the stand-in engine -----------------------------------------------------------
def test_scales_switches_and_removal_reach_the_engine(qtbot, fake, tmp_path):
    window, pipe, loads = fake
    a, b = write_lora(tmp_path / "a.safetensors"), write_lora(tmp_path / "b.safetensors", seed=2)
    assert drop_file(window, a) and drop_file(window, b)
    assert drop_file(window, a)  # already listed: not added twice
    panel = window.loraPanel
    assert window.loraList.count() == 2 and window.settings.known_loras[:2] == [str(a), str(b)]
    type_prompt(qtbot, window, "two loras")
    generate(qtbot, window)
    assert pipe.lora_calls == [[(str(a), 1.0), (str(b), 1.0)]]

    # The slider, by keyboard: one step is 0.05.
    row_a = panel.rows()[0]
    row_a.scaleSlider.setFocus()
    qtbot.keyClick(row_a.scaleSlider, Qt.Key.Key_Left)
    assert row_a.scale() == 0.95 and row_a.scaleSpin.value() == pytest.approx(0.95)
    generate(qtbot, window)
    assert pipe.lora_calls[-1] == [(str(a), 0.95), (str(b), 1.0)]

    # Delete key on the list removes the selected LoRA; the remove button the other.
    window.loraList.setFocus()
    window.loraList.setCurrentRow(1)
    qtbot.keyClick(window.loraList, Qt.Key.Key_Delete)
    assert [r.path for r in panel.rows()] == [str(a)]
    generate(qtbot, window)
    assert pipe.lora_calls[-1] == [(str(a), 0.95)]
    qtbot.mouseClick(panel.rows()[0].removeButton, Qt.MouseButton.LeftButton)
    assert window.loraList.count() == 0 and window.loraPanel.emptyLabel.isVisibleTo(window)
    generate(qtbot, window)
    assert pipe.lora_calls[-1] == [] and len(loads) == 1


def test_jobs_batch_only_with_the_same_loras(qtbot, fake, tmp_path):
    window, pipe, loads = fake
    request = GenerationRequest("x", 64, 64, seed=1)
    plain = GenerationParams(ModelChoice("m"), request)
    styled = GenerationParams(ModelChoice("m"), request, (LoraChoice("/l/a.safetensors", 1.0),))
    assert batch_key(plain) != batch_key(styled)
    assert batch_key(styled.with_(seed=2)) == batch_key(styled)
    assert batch_key(styled) != batch_key(GenerationParams(ModelChoice("m"), request,
                                                           (LoraChoice("/l/a.safetensors", 0.5),)))

    lora = write_lora(tmp_path / "a.safetensors")
    type_prompt(qtbot, window, "batches")
    params = window.controls.params()
    window.lora_controller.add_path(lora)
    with_lora = window.controls.params()
    assert with_lora.loras == (LoraChoice(str(lora), 1.0),)
    window.queue.submit([params.with_(seed=1), with_lora.with_(seed=2), with_lora.with_(seed=3)])
    wait_ready(qtbot, window)
    assert [c["seeds"] for c in pipe.batch_calls] == [[2, 3]] and [c["seed"] for c in pipe.calls] == [1]
    assert pipe.lora_calls == [[(str(lora), 1.0)]]


def test_the_library_lists_its_files_with_their_metadata(qtbot, fake, monkeypatch, data_dir):
    window, pipe, loads = fake
    library = data_dir / "loras"
    assert not library.exists()  # created on first use
    opened: list = []
    monkeypatch.setattr(loracontroller_module, "open_folder", opened.append)
    qtbot.mouseClick(window.loraPanel.openLoraFolderButton, Qt.MouseButton.LeftButton)
    assert opened == [library] and library.is_dir()

    write_lora(library / "ink.safetensors", metadata={
        "ss_output_name": "Ink Wash", "ss_base_model_version": "flux1",
        "ss_tag_frequency": json.dumps({"5_ink": {"inkwash": 12, "mountain": 2}})})
    write_lora(library / "cat.safetensors", metadata={"trigger_word": "sks cat",
                                                      "modelspec.architecture": "flux-1-dev/lora"})
    (library / "notes.txt").write_text("not a LoRA")
    combo = window.loraPanel.loraLibraryCombo
    combo.showPopup()  # opening the list rescans the folder
    combo.hidePopup()
    labels = [combo.itemText(i) for i in range(combo.count())]
    assert labels == ["Add from library…", "cat · sks cat", "Ink Wash · inkwash, mountain"]
    tip = combo.itemData(2, Qt.ItemDataRole.ToolTipRole)
    assert "Trigger words: inkwash, mountain" in tip and "Base model: flux1" in tip
    assert "Base model: flux-1-dev/lora" in combo.itemData(1, Qt.ItemDataRole.ToolTipRole)

    choose_from_library(qtbot, combo, "Ink Wash · inkwash, mountain")
    rows = window.loraPanel.rows()
    assert [r.name for r in rows] == ["Ink Wash"] and combo.currentIndex() == 0
    assert rows[0].triggerLabel.text() == "Triggers: inkwash, mountain"
    assert "Base model: flux1" in rows[0].toolTip()
    assert window.settings.known_loras == []  # library files are found there anyway


def test_drops_add_loras_and_images_still_restore(qtbot, fake, tmp_path):
    window, pipe, loads = fake
    lora = write_lora(tmp_path / "drop me.safetensors")
    assert drop_file(window, lora)
    assert [r.path for r in window.loraPanel.rows()] == [str(lora)]

    unreadable = tmp_path / "half.safetensors"
    unreadable.write_bytes(b"\x01\x02")
    assert drop_file(window, unreadable)
    assert window.loraList.count() == 1 and "half.safetensors" in window.messageLabel.text()

    # An image still restores its settings, LoRAs included: here one the library does not have.
    request = GenerationRequest("restored prompt", 64, 64, steps=2, seed=99, model="fake-schnell",
                                loras=(LoraRef("style.safetensors", "ab12cd34ef56", 0.8),))
    png = tmp_path / "made.png"
    save_png(Image.new("RGB", (64, 64), (1, 2, 3)), png, request.to_metadata())
    assert drop_file(window, png)
    assert window.promptEdit.toPlainText() == "restored prompt" and window.seedSpin.value() == 99
    assert window.loraList.count() == 0
    assert window.messageLabel.text() == "style.safetensors (ab12cd34ef56) is not in your LoRA library"


def test_restore_reports_a_missing_lora_and_restores_the_rest(qtbot, fake, data_dir, tmp_path):
    window, pipe, loads = fake
    kept = write_lora(data_dir / "loras" / "kept.safetensors")
    outside = write_lora(tmp_path / "outside.safetensors", seed=5)
    window.lora_controller.add_path(outside)  # remembered: found again by restore
    refs = (LoraRef("kept.safetensors", lora_info(kept).fingerprint, 0.6),
            LoraRef("style.safetensors", "ab12cd34ef56", 1.0),
            LoraRef("outside.safetensors", lora_info(outside).fingerprint, -1.5))
    request = GenerationRequest("old", 64, 64, steps=2, seed=5, model="fake-schnell", loras=refs)
    png = window.data_dir.images / "old.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    save_png(Image.new("RGB", (64, 64)), png, request.to_metadata())
    window.history.add(GenerationParams(ModelChoice(window.controls.current_model()), request), png)
    window.refresh_history()
    use_settings_of_row(qtbot, window, 0)
    assert [(r.path, r.scale()) for r in window.loraPanel.rows()] == [(str(kept), 0.6), (str(outside), -1.5)]
    assert window.messageLabel.text() == "style.safetensors (ab12cd34ef56) is not in your LoRA library"
    assert "LoRA kept 0.6, style 1, outside -1.5" in window.historyModel.index(0).data(Qt.ItemDataRole.ToolTipRole)

    with qtbot.waitSignal(window.queue.finished, timeout=TIMEOUT):
        qtbot.mouseClick(window.rerunButton, Qt.MouseButton.LeftButton)
    wait_ready(qtbot, window)
    assert pipe.lora_calls[-1] == [(str(kept), 0.6), (str(outside), -1.5)]


def test_lora_widgets_have_names_and_tooltips(qtbot, fake, tmp_path):
    window, pipe, loads = fake
    from PySide6.QtWidgets import QWidget

    for name in ("loraList", "addLoraButton", "loraLibraryCombo", "openLoraFolderButton"):
        widget = window.findChild(QWidget, name)
        assert widget is not None and widget.accessibleName() == name and widget.toolTip(), name
    window.lora_controller.add_path(write_lora(tmp_path / "a.safetensors"))
    row = window.loraPanel.rows()[0]
    for widget in (row.enableCheck, row.scaleSlider, row.scaleSpin, row.removeButton):
        assert widget.toolTip() and widget.accessibleName() and widget.focusPolicy() != Qt.FocusPolicy.NoFocus
    assert (row.scaleSpin.minimum(), row.scaleSpin.maximum(), row.scaleSpin.singleStep()) == (-2.0, 2.0, 0.05)


def test_the_lora_panel_does_not_import_mlx():
    import subprocess
    import sys

    code = ("import sys, app.window, app.loracontroller, app.lorapanel, app.loras; "
            "print('mlx.core' in sys.modules, 'mlx_flux.lora_formats' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "QT_QPA_PLATFORM": "offscreen"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]
