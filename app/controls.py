"""The left-hand panel: model, prompt and every generation setting, plus Generate/Cancel and the queue.

It knows nothing about the worker: the window reads `params()` and calls `apply_*()`.
"""

from __future__ import annotations

from PySide6.QtCore import QEvent, QKeyCombination, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QKeyEvent, QKeySequence, QTextCursor
from PySide6.QtWidgets import (
    QAbstractSpinBox, QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QFrame, QHBoxLayout, QLabel, QListWidget,
    QPlainTextEdit, QPushButton, QScrollArea, QSizePolicy, QSlider, QSpinBox, QStyle, QToolButton, QVBoxLayout,
    QWidget,
)

from mlx_flux.images import kontext_size
from mlx_flux.request import GenerationRequest, ImageRef
from mlx_flux.variants import DEV, VARIANTS

from app.inputpanel import InputPanel
from app.lorapanel import LoraPanel
from app.models import display_name
from app.params import (MAX_SIZE, MIN_SIZE, SEED_MAX, SIZE_STEP, GenerationParams, ModelChoice, size_for_aspect,
                        snap_size)
from app.widgets import link_slider_spin, name_widget

ASPECTS: list[tuple[str, float]] = [
    ("Square 1:1", 1.0), ("Landscape 4:3", 4 / 3), ("Landscape 3:2", 3 / 2), ("Wide 16:9", 16 / 9),
    ("Portrait 3:4", 3 / 4), ("Portrait 2:3", 2 / 3), ("Tall 9:16", 9 / 16),
]
CUSTOM_ASPECT = "Custom"
GUIDANCE_SCALE = 10  # the slider works in tenths: 35 -> 3.5
QUANTIZE_CHOICES = [("Full precision", None), ("8-bit", 8), ("4-bit", 4)]
SUBMIT_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter)
__all__ = ["ControlsPanel", "name_widget"]


class PromptEdit(QPlainTextEdit):
    """Multi-line prompt; Cmd+Return (Ctrl+Enter elsewhere) submits instead of adding a line."""

    submitted = Signal()

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802
        # The window's Generate action normally takes this shortcut first; this is the fallback
        # for when the shortcut map does not see the key (e.g. the action is disabled or hidden).
        if event.key() in SUBMIT_KEYS and event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.submitted.emit()
            event.accept()
            return
        super().keyPressEvent(event)

    def text(self) -> str:
        return self.toPlainText()

    def replace_text(self, text: str) -> None:
        """Replace the whole prompt as one edit that Cmd+Z (Ctrl+Z) undoes: setPlainText would
        clear the undo history, and with it what the person had typed."""
        if text == self.toPlainText():
            return
        cursor = QTextCursor(self.document())
        cursor.beginEditBlock()
        cursor.select(QTextCursor.SelectionType.Document)
        cursor.insertText(text)
        cursor.endEditBlock()
        self.setTextCursor(cursor)  # the caret after the new text, as after typing it


class SizeSpin(QSpinBox):
    """Pixels in steps of 16; typed values snap to the nearest multiple when editing ends."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setRange(MIN_SIZE, MAX_SIZE)
        self.setSingleStep(SIZE_STEP)
        self.setSuffix(" px")
        self.setAccelerated(True)
        self.setKeyboardTracking(False)  # one valueChanged when typing is done, not per digit
        self.editingFinished.connect(self._snap)

    def _snap(self) -> None:
        snapped = snap_size(self.value())
        if snapped != self.value():
            self.setValue(snapped)


MIN_VISIBLE_HEIGHT = 360  # px of controls a short window still shows; the rest scrolls

class ControlsPanel(QWidget):
    generateRequested = Signal()
    cancelRequested = Signal()
    modelChosen = Signal(str)  # a model source picked by the person (not by code)
    openModelRequested = Signal()
    quantizeChosen = Signal(object)  # None, 4 or 8
    removeFromQueueRequested = Signal(int)  # job id

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.variant: str | None = None
        self._build()
        self.apply_variant(None, reset_values=True)

    def minimumSizeHint(self) -> QSize:  # noqa: N802
        """As wide as the controls need (plus a scroll bar), only as tall as a useful part of them."""
        bar = self.style().pixelMetric(QStyle.PixelMetric.PM_ScrollBarExtent)
        return QSize(self.content.minimumSizeHint().width() + bar, MIN_VISIBLE_HEIGHT)

    # -- construction ---------------------------------------------------------------------
    def _build(self) -> None:
        # The controls scroll (vertically) inside the panel: with a queue and LoRAs they are taller
        # than a 13-inch screen leaves a window, which must not grow past the screen for them.
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scrollArea = QScrollArea()
        self.scrollArea.setObjectName("controlsScroll")
        self.scrollArea.setWidgetResizable(True)
        self.scrollArea.setFrameShape(QFrame.Shape.NoFrame)
        self.scrollArea.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.content = QWidget()
        self.content.setObjectName("controlsContent")
        self.scrollArea.setWidget(self.content)
        self.scrollArea.viewport().setAutoFillBackground(False)
        self.content.setAutoFillBackground(False)
        outer.addWidget(self.scrollArea)
        layout = QVBoxLayout(self.content)
        # Little margin on the right: the scroll bar's room (minimumSizeHint) is there, and the
        # splitter's handle beside it keeps the controls off the image.
        layout.setContentsMargins(12, 12, 2, 12)
        layout.setSpacing(8)

        # Model picker, with a button to open any folder or file, and the precision.
        self.modelCombo = name_widget(QComboBox(), "modelCombo", "The model that makes the image",
                                      "Choose a model: a known repository, or a folder or .safetensors file")
        self.modelCombo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.modelCombo.setMinimumContentsLength(12)
        self.modelCombo.activated.connect(self._on_model_activated)
        self.openModelButton = name_widget(QToolButton(), "openModelButton", None,
                                           "Open a model folder or .safetensors file…")
        self.openModelButton.setText("…")
        self.openModelButton.clicked.connect(self.openModelRequested)
        self.quantizeCombo = name_widget(QComboBox(), "quantizeCombo", "Weight precision",
                                         "Quantized weights use less memory; the model reloads when changed")
        for label, bits in QUANTIZE_CHOICES:
            self.quantizeCombo.addItem(label, bits)
        self.quantizeCombo.activated.connect(lambda _: self.quantizeChosen.emit(self.quantize()))
        model_row = QHBoxLayout()
        model_row.setSpacing(6)
        model_row.addWidget(self.modelCombo, 1)
        model_row.addWidget(self.openModelButton)

        # Prompt.
        self.promptEdit = name_widget(PromptEdit(), "promptEdit", "Describe the image to generate")
        self.promptEdit.setPlaceholderText("Describe the image you want…")
        self.promptEdit.setTabChangesFocus(True)
        self.promptEdit.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.promptEdit.setMinimumHeight(90)
        self.promptEdit.setMaximumHeight(260)
        self.promptEdit.submitted.connect(self.generateRequested)

        # The input image (img2img's start, or the image a Kontext model edits) and its strength.
        self.inputPanel = InputPanel()
        self.inputImageView, self.strengthSlider = self.inputPanel.inputImageView, self.inputPanel.strengthSlider

        # Size: two spin boxes, a swap button and aspect presets.
        self.widthSpin = name_widget(SizeSpin(), "widthSpin", "Image width in pixels")
        self.heightSpin = name_widget(SizeSpin(), "heightSpin", "Image height in pixels")
        self.swapSizeButton = name_widget(QToolButton(), "swapSizeButton", None, "Swap width and height")
        self.swapSizeButton.setText("⇄")
        self.swapSizeButton.clicked.connect(self._swap_size)
        self.aspectCombo = name_widget(QComboBox(), "aspectCombo", "Aspect ratio presets")
        for label, ratio in ASPECTS:
            self.aspectCombo.addItem(label, ratio)
        self.aspectCombo.addItem(CUSTOM_ASPECT, None)
        self.aspectCombo.activated.connect(self._on_aspect_chosen)
        self.widthSpin.valueChanged.connect(self._sync_aspect)
        self.heightSpin.valueChanged.connect(self._sync_aspect)
        size_row = QHBoxLayout()
        size_row.setSpacing(4)
        size_row.addWidget(self.widthSpin, 1)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.heightSpin, 1)
        size_row.addWidget(self.swapSizeButton)

        # Steps and guidance sliders with their values beside them.
        self.stepsSlider = name_widget(QSlider(Qt.Orientation.Horizontal), "stepsSlider", "Number of denoising steps")
        self.guidanceSlider = name_widget(QSlider(Qt.Orientation.Horizontal), "guidanceSlider",
                                          "How closely the image follows the prompt")
        self.guidanceSlider.setRange(0, 10 * GUIDANCE_SCALE)
        self.guidanceSlider.setPageStep(5)
        # Beside each slider its value, which can also be typed (exact values, keyboard users).
        self.stepsValueSpin = name_widget(QSpinBox(), "stepsValueSpin", "Number of denoising steps",
                                          "Number of denoising steps: type a value or drag the slider")
        self.guidanceValueSpin = name_widget(QDoubleSpinBox(), "guidanceValueSpin", "Guidance",
                                             "How closely the image follows the prompt: type a value or drag")
        self.guidanceValueSpin.setDecimals(1)
        self.guidanceValueSpin.setSingleStep(1 / GUIDANCE_SCALE)
        _link(self.stepsSlider, self.stepsValueSpin, 1)
        _link(self.guidanceSlider, self.guidanceValueSpin, GUIDANCE_SCALE)
        steps_row = _row(self.stepsSlider, self.stepsValueSpin)
        guidance_row = _row(self.guidanceSlider, self.guidanceValueSpin)

        # Seed: random by default; typing a seed locks it.
        self.seedSpin = name_widget(QSpinBox(), "seedSpin", "Random seed of the next image")
        self.seedSpin.setRange(0, SEED_MAX)
        self.seedSpin.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)
        self.seedSpin.lineEdit().textEdited.connect(lambda _: self.randomSeedCheck.setChecked(False))
        self.randomSeedCheck = name_widget(QCheckBox("Random"), "randomSeedCheck", None,
                                           "Use a new random seed for every image; untick to lock the seed")
        # A fresh window has no seed to show: "random" rather than a 0 that looks chosen.
        # (After the keystroke that unticks Random has landed: resetting the text mid-edit would lose it.)
        self.randomSeedCheck.toggled.connect(
            lambda on: QTimer.singleShot(0, lambda: self.seedSpin.setSpecialValueText(
                "random" if self.randomSeedCheck.isChecked() else "")))
        self.randomSeedCheck.setChecked(True)
        self.seedSpin.setSpecialValueText("random")
        seed_row = _row(self.seedSpin, self.randomSeedCheck)

        self.countSpin = name_widget(QSpinBox(), "countSpin", "How many images to queue, one seed each")
        self.countSpin.setRange(1, 16)
        self.countSpin.setSuffix(" image")
        self.countSpin.valueChanged.connect(lambda n: self.countSpin.setSuffix(" image" if n == 1 else " images"))

        # Generate / Cancel.
        shortcut = QKeySequence(QKeyCombination(Qt.KeyboardModifier.ControlModifier, Qt.Key.Key_Return))
        shortcut_text = shortcut.toString(QKeySequence.SequenceFormat.NativeText)
        self.generateButton = name_widget(QPushButton("Generate"), "generateButton", "Generate the image",
                                          f"Generate ({shortcut_text})")
        self.generateButton.setDefault(True)
        self.generateButton.setMinimumHeight(32)
        self.generateButton.clicked.connect(self.generateRequested)
        self.cancelButton = name_widget(QPushButton("Cancel"), "cancelButton", "Stop generating",
                                        "Stop the current image and clear the queue (Esc)")
        self.cancelButton.setEnabled(False)
        self.cancelButton.clicked.connect(self.cancelRequested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generateButton, 2)
        buttons.addWidget(self.cancelButton, 1)

        # Queue: visible only while something is waiting or running.
        self.queueLabel = QLabel("Queue")
        self.queueList = name_widget(QListWidget(), "queueList", "Images waiting to be generated",
                                     "Select an item and press Delete to remove it from the queue")
        self.queueList.setMaximumHeight(130)
        self.queueList.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.queueList.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.queueList.setUniformItemSizes(True)
        self.queueList.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)
        self.queueList.installEventFilter(self)
        for w in (self.queueLabel, self.queueList):
            w.setVisible(False)

        # LoRAs: the active ones with their scales, and where to add more from.
        self.loraPanel = LoraPanel()

        model_form = _form()
        model_form.addRow("Model", model_row)
        model_form.addRow("Precision", self.quantizeCombo)
        settings_form = _form()
        settings_form.addRow("Size", size_row)
        settings_form.addRow("Aspect", self.aspectCombo)
        settings_form.addRow("Steps", steps_row)
        self.guidanceLabel = QLabel("Guidance")
        settings_form.addRow(self.guidanceLabel, guidance_row)
        settings_form.addRow("Seed", seed_row)
        settings_form.addRow("Batch", self.countSpin)

        # Top to bottom in the order a person works: model, prompt, go, then the finer settings.
        layout.addLayout(model_form)
        prompt_label = QLabel("Prompt")
        prompt_label.setBuddy(self.promptEdit)
        layout.addWidget(prompt_label)
        layout.addWidget(self.promptEdit, 1)
        layout.addWidget(self.inputPanel)
        layout.addLayout(buttons)
        layout.addSpacing(4)
        layout.addLayout(settings_form)
        layout.addSpacing(4)
        layout.addWidget(self.loraPanel)
        layout.addWidget(self.queueLabel)
        layout.addWidget(self.queueList)
        layout.addStretch(0)

        # Keyboard order follows the work: model, prompt, Generate, then the finer settings.
        # (The input image, shown between prompt and Generate, comes right after Generate/Cancel.)
        order = [self.modelCombo, self.openModelButton, self.quantizeCombo, self.promptEdit,
                 self.generateButton, self.cancelButton, self.inputPanel.openInputButton,
                 self.inputPanel.clearInputButton, self.inputImageView, self.strengthSlider,
                 self.inputPanel.strengthSpin, self.widthSpin, self.heightSpin,
                 self.swapSizeButton, self.aspectCombo, self.stepsSlider, self.stepsValueSpin,
                 self.guidanceSlider, self.guidanceValueSpin, self.seedSpin, self.randomSeedCheck, self.countSpin, self.loraPanel.loraLibraryCombo,
                 self.loraPanel.addLoraButton, self.loraPanel.openLoraFolderButton, self.loraPanel.loraList,
                 self.queueList]
        for first, second in zip(order, order[1:]):
            QWidget.setTabOrder(first, second)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802
        if obj is self.queueList and event.type() == QEvent.Type.KeyPress:
            if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
                self.remove_selected_from_queue()
                return True
        return super().eventFilter(obj, event)

    def remove_selected_from_queue(self) -> None:
        for item in self.queueList.selectedItems():
            self.removeFromQueueRequested.emit(int(item.data(Qt.ItemDataRole.UserRole)))

    # -- model picker -----------------------------------------------------------------------
    def model_index(self, source: str) -> int:
        for i in range(self.modelCombo.count()):
            if self.modelCombo.itemData(i) == source:
                return i
        return -1

    def add_model(self, source: str, label: str | None = None) -> int:
        index = self.model_index(source)
        if index < 0:
            self.modelCombo.addItem(label or display_name(source), source)
            index = self.modelCombo.count() - 1
            self.modelCombo.setItemData(index, source, Qt.ItemDataRole.ToolTipRole)
        return index

    def select_model(self, source: str) -> None:
        """Show `source` as the current model without emitting modelChosen."""
        if source:
            self.modelCombo.setCurrentIndex(self.add_model(source))

    def current_model(self) -> str:
        return self.modelCombo.currentData() or ""

    def _on_model_activated(self, index: int) -> None:
        self.modelChosen.emit(self.modelCombo.itemData(index) or "")

    def quantize(self) -> int | None:
        return self.quantizeCombo.currentData()

    def set_quantize(self, bits: int | None) -> None:
        index = self.quantizeCombo.findData(bits)
        self.quantizeCombo.setCurrentIndex(max(0, index))

    # -- variant ------------------------------------------------------------------------------
    def apply_variant(self, variant: str | None, defaults: tuple[int, float | None] | None = None,
                      reset_values: bool = False) -> None:
        """Ranges and defaults of the model's variant: schnell has few steps and no guidance.

        `defaults` (steps, guidance) come from the loaded engine; without them the table for
        the (guessed) variant is used, and an unknown variant gets dev's wider ranges.
        """
        facts = VARIANTS.get(variant or "", DEV)
        steps_default, guidance_default = defaults or (facts.steps, facts.guidance)
        self.stepsSlider.setRange(1, max(facts.max_steps, steps_default))
        has_guidance = guidance_default is not None
        # Room above the default for every variant: FLUX.1 Fill works at 30 (dev at 3.5), and a
        # slider that stopped at 10 would silently send 10.
        self.guidanceSlider.setRange(0, round(max(10.0, 2 * (guidance_default or 0)) * GUIDANCE_SCALE))
        # Schnell is guidance-distilled: the control would do nothing, so it is disabled.
        self.guidanceSlider.setEnabled(has_guidance)
        self.guidanceLabel.setEnabled(has_guidance)
        self.guidanceValueSpin.setEnabled(has_guidance)
        if not has_guidance:
            tip = f"{display_name(variant or '') or 'This model'} has no guidance control"
        else:
            tip = f"How closely the image follows the prompt (default {guidance_default:g})"
        self.guidanceSlider.setToolTip(tip)
        self.guidanceValueSpin.setToolTip(tip + (": type a value or drag" if has_guidance else ""))
        if reset_values or variant != self.variant:
            self.stepsSlider.setValue(steps_default)
            if has_guidance:
                self.guidanceSlider.setValue(round(guidance_default * GUIDANCE_SCALE))
        _show_none(self.guidanceValueSpin, not has_guidance, self.guidanceSlider, GUIDANCE_SCALE)
        self.variant = variant
        self.inputPanel.set_edits(facts.edits)
        self.inputPanel.set_fills(facts.fills)

    # -- params -------------------------------------------------------------------------------
    def params(self) -> GenerationParams:
        """The settings as shown; seed None when it should be random.

        With an input image the request names it (`ImageRef`: hash, and the size the model sees
        it at) and the params point at the app's copy. A Kontext model sees its reference at the
        Kontext resolution nearest the image's aspect ratio, whatever the output size (as
        diffusers does); img2img gets the strength."""
        for spin in (self.stepsValueSpin, self.guidanceValueSpin):
            spin.interpretText()  # a value typed and not yet confirmed (Cmd+Return right after) counts
        width, height = snap_size(self.widthSpin.value()), snap_size(self.heightSpin.value())
        stored, edits = self.inputPanel.stored(), self.inputPanel.edits()
        image = None
        if stored is not None:
            image = ImageRef(stored.fingerprint, *(kontext_size(stored) if edits else (width, height)))
        request = GenerationRequest(
            prompt=self.promptEdit.toPlainText().strip(),
            width=width,
            height=height,
            steps=self.stepsSlider.value(),
            guidance=self.guidanceSlider.value() / GUIDANCE_SCALE if self.guidanceSlider.isEnabled() else None,
            seed=None if self.randomSeedCheck.isChecked() else self.seedSpin.value(),
            image=image,
            strength=self.inputPanel.strength() if stored is not None and not edits
            and not self.inputPanel.inpaints() else None,
        )
        return GenerationParams(ModelChoice(self.current_model(), self.quantize()), request,
                                self.loraPanel.choices(), stored.choice if stored is not None else None)

    def apply_request(self, request: GenerationRequest, prompt: bool = True) -> None:
        """Show `request` in the controls (restoring an entry or a dropped image); the seed is locked.

        Values the controls cannot hold are fitted: sizes snap to multiples of 16, a seed above
        the spin box's range is folded into it."""
        if prompt:
            self.promptEdit.replace_text(request.prompt)
        self.set_size(request.width, request.height)
        if request.steps:
            if request.steps > self.stepsSlider.maximum():
                self.stepsSlider.setMaximum(request.steps)
            self.stepsSlider.setValue(request.steps)
        if request.guidance is not None and self.guidanceSlider.isEnabled():
            self.guidanceSlider.setValue(round(request.guidance * GUIDANCE_SCALE))
        if request.seed is not None:
            self.set_seed(request.seed, lock=True)
        if request.strength is not None:
            self.inputPanel.set_strength(request.strength)

    def set_seed(self, seed: int, lock: bool) -> None:
        self.seedSpin.setValue(int(seed) % (SEED_MAX + 1))
        if lock:
            self.randomSeedCheck.setChecked(False)

    def set_size(self, width: int, height: int) -> None:
        self.widthSpin.setValue(snap_size(width))
        self.heightSpin.setValue(snap_size(height))

    def _swap_size(self) -> None:
        self.set_size(self.heightSpin.value(), self.widthSpin.value())

    def _on_aspect_chosen(self, index: int) -> None:
        ratio = self.aspectCombo.itemData(index)
        if ratio is None:
            return
        area = max(self.widthSpin.value() * self.heightSpin.value(), MIN_SIZE * MIN_SIZE)
        self.set_size(*size_for_aspect(float(ratio), area))
        self.aspectCombo.setCurrentIndex(index)  # rounding may have looked "custom"

    def _sync_aspect(self) -> None:
        ratio = self.widthSpin.value() / self.heightSpin.value()
        best = self.aspectCombo.count() - 1  # Custom
        for i, (_, preset) in enumerate(ASPECTS):
            if abs(ratio / preset - 1) < 0.03:
                best = i
                break
        self.aspectCombo.setCurrentIndex(best)

    # -- state --------------------------------------------------------------------------------
    def set_busy(self, busy: bool) -> None:
        """While the queue runs, Generate still works (it queues); Cancel becomes available."""
        self.cancelButton.setEnabled(busy)
        self.generateButton.setText("Add to Queue" if busy else "Generate")


def _link(slider: QSlider, spin: QSpinBox | QDoubleSpinBox, scale: int) -> None:
    """`spin` shows the slider's value (link_slider_spin), and its range follows the slider's."""
    spin.setAlignment(Qt.AlignmentFlag.AlignRight)
    _set_range(spin, slider.minimum() / scale, slider.maximum() / scale)
    spin.setValue(_spin_value(spin, slider.value() / scale))
    slider.rangeChanged.connect(lambda low, high: _set_range(spin, low / scale, high / scale))
    link_slider_spin(slider, spin, scale)


def _spin_value(spin: QSpinBox | QDoubleSpinBox, value: float) -> float | int:
    return value if isinstance(spin, QDoubleSpinBox) else round(value)


def _set_range(spin: QSpinBox | QDoubleSpinBox, low: float, high: float) -> None:
    if spin.specialValueText():  # showing "no value": keep its marker below the range
        low = min(low, spin.minimum())
    spin.setRange(_spin_value(spin, low), _spin_value(spin, high))


def _show_none(spin: QDoubleSpinBox, none: bool, slider: QSlider, scale: int) -> None:
    """A model without the setting: the spin box shows "—" (a value just below its range,
    which the slider never takes); with it, the slider's value."""
    spin.blockSignals(True)
    if none:
        spin.setSpecialValueText("—")
        spin.setMinimum(slider.minimum() / scale - 1)
        spin.setValue(spin.minimum())
    else:
        spin.setSpecialValueText("")
        spin.setMinimum(slider.minimum() / scale)
        spin.setValue(slider.value() / scale)
    spin.blockSignals(False)


def _form() -> QFormLayout:
    form = QFormLayout()
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    form.setContentsMargins(0, 0, 0, 0)
    return form


def _row(main: QWidget, side: QWidget) -> QHBoxLayout:
    row = QHBoxLayout()
    row.setSpacing(6)
    row.addWidget(main, 1)
    row.addWidget(side)
    return row
