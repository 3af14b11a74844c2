"""The main window: controls on the left, the image in the middle, history on the right.

It wires widgets to the job queue (which owns the worker thread) and the history store, and
turns every failure into a message in the window; nothing here touches MLX. What the
history list does (historycontroller.py) and restoring an image's settings (restore.py) are
controller objects the window owns; the menus (menus.py) are built onto it; what the image
view is doing lives in one ViewState (viewstate.py).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QMimeData, Qt, QUrl
from PySide6.QtGui import QCloseEvent, QGuiApplication, QIcon, QImage
from PySide6.QtWidgets import QFileDialog, QLabel, QMainWindow, QMessageBox, QSplitter

from app import APP_DISPLAY_NAME
from app.controls import ControlsPanel
from app.errors import describe_error
from app.export import (default_folder, default_name, dialog_filters, export_image, format_for,
                        reveal_in_file_manager, with_extension)
from app.focusring import apply_focus_ring
from app.history import HistoryError, HistoryStore
from app.historycontroller import HistoryController
from app.historyview import HistoryPanel, minimum_panel_width
from app.imagepanel import PLACEHOLDER, ImagePanel, Shown, format_duration
from app.imaging import qimage_to_pil
from app.inputcontroller import InputController
from app.maskcontroller import MaskController
from app.messagebar import MODEL_LOAD
from app.inputs import input_text
from app import inputs
from app.jobs import JobQueue
from app.loracontroller import LoraController
from app.loras import lora_text
from app.menus import build_menus, build_view_actions
from app.notify import FinishNotifier
from app.panels import restore_panels
from app.preferences import apply_preferences
from app.models import display_name, guess_variant, is_local, known_models
from app.modelsetup import ModelSetup
from app.params import GenerationParams, ModelChoice
from app.paths import DataDir
from app.restore import RestoreController
from app.runcontrol import RunControl
from app.settings import Settings
from app.viewer import ViewerController
from app.viewstate import ViewState
from app.worker import Job, JobResult, ModelInfo

__all__ = ["MainWindow", "Shown", "find_icon"]

log = logging.getLogger(__name__)


def find_icon() -> QIcon:
    """The packaging engineer's icon if it is there; a missing icon is not an error."""
    root = Path(__file__).resolve().parent
    for candidate in (root.parent / "resources" / "icon.png", root / "resources" / "icon.png"):
        if candidate.is_file():
            return QIcon(str(candidate))
    return QIcon()


class MainWindow(QMainWindow):
    def __init__(self, data_dir: DataDir, settings: Settings, history: HistoryStore,
                 initial_model: str | None = None, startup_problems: list[str] | None = None) -> None:
        super().__init__()
        self.setObjectName("mainWindow")
        self.setWindowTitle(APP_DISPLAY_NAME)
        self.setWindowIcon(find_icon())
        self.setAcceptDrops(True)
        self.data_dir = data_dir
        self.settings = settings
        self.history = history
        self.shown: Shown | None = None
        self.model_info: ModelInfo | None = None
        self.model_failure: tuple[ModelChoice, str] | None = None  # the last load that failed, and why
        self.view = ViewState()
        self._closed = False

        self.queue = JobQueue(data_dir.images, self)
        try:
            self._build()
            build_menus(self)
            self._connect()
            self.viewer = ViewerController(self)  # zoom, grid, compare, Quick Look (app/viewer.py)
            build_view_actions(self)
            self._update_image_actions()
            self._restore_settings(initial_model)
            self.refresh_history()
            self.run_control = RunControl(self)  # cancelling, quitting, and what outlives the app
        except BaseException:
            self.queue.shutdown()  # a running QThread must not outlive a half-built window
            raise
        app = QGuiApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.queue.shutdown)
        if startup_problems:
            self.show_message("\n".join(startup_problems), "warning")
        self.run_control.restore_unfinished()  # the last session's prompt, and its queue offered
        self.promptEdit.setFocus()  # ready to type as soon as the window opens

    # ======================================================================================
    # construction
    # ======================================================================================
    def _build(self) -> None:
        # Left: model, prompt and settings. Centre: messages, the image, its caption and actions,
        # progress. Right: searchable history with entry actions. Their widgets that tests and
        # scripts reach for are also attributes of the window (besides findChild by objectName).
        self.controls = ControlsPanel()
        self.imagePanel = ImagePanel()
        self.historyPanel = HistoryPanel(self.history.thumbnail,
                                         lambda fingerprint: inputs.preview_image(self.data_dir.inputs, fingerprint))
        for panel, names in _EXPOSED.items():
            for name in names:
                setattr(self, name, getattr(getattr(self, panel), name))
        self.messageLabel = self.messageBar.label
        self.previewView.drag_mime = self.image_mime

        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("mainSplitter")
        self.splitter.setChildrenCollapsible(False)
        for widget, stretch in ((self.controls, 0), (self.imagePanel, 1), (self.historyPanel, 0)):
            self.splitter.addWidget(widget)
            self.splitter.setStretchFactor(self.splitter.count() - 1, stretch)
        # No minimum widths below the panels' own: a narrower panel cut its fields and buttons.
        # Room for a thumbnail and a row's seed and age whole (app/historyview.py).
        self.historyPanel.setMinimumWidth(minimum_panel_width(self.historyPanel))
        self.splitter.setSizes([320, 680, 320])
        self.setCentralWidget(self.splitter)

        self.modelStatusLabel = QLabel()
        self.modelStatusLabel.setObjectName("modelStatusLabel")
        self.statusBar().addPermanentWidget(self.modelStatusLabel)
        # First launch: generous but within the screen (saved geometry replaces this later).
        screen = QGuiApplication.primaryScreen()
        available = screen.availableGeometry().size() if screen else None
        self.resize(min(1320, int(available.width() * 0.92)) if available else 1320,
                    min(820, int(available.height() * 0.9)) if available else 820)

        self.loraPanel = self.controls.loraPanel
        self.loraList, self.addLoraButton = self.loraPanel.loraList, self.loraPanel.addLoraButton
        self.lora_controller = LoraController(self)
        self.inputPanel = self.controls.inputPanel
        self.input_controller = InputController(self)
        self.mask_controller = MaskController(self)
        self.restorer = RestoreController(self)
        self.history_controller = HistoryController(self)
        # Preferences that act while running, the background notification, the focus ring.
        apply_preferences(self)
        self.notifier = FinishNotifier(self, lambda: self.settings.notify_finished)
        apply_focus_ring(self)
        self.model_setup = ModelSetup(self)  # first run, the model manager, downloads

    def _connect(self) -> None:
        c, q = self.controls, self.queue
        c.generateRequested.connect(self.generate)
        c.cancelRequested.connect(self.cancel_all)
        c.modelChosen.connect(self.choose_model)
        c.quantizeChosen.connect(lambda _: self.choose_model(c.current_model()))
        c.openModelRequested.connect(self.choose_model_folder)
        c.removeFromQueueRequested.connect(q.cancel)
        self.exportButton.clicked.connect(self.choose_export)
        self.copyImageButton.clicked.connect(self.copy_image)
        self.revealButton.clicked.connect(self.reveal_shown)
        self.reuseSeedButton.clicked.connect(self.reuse_seed)
        self.useAsInputButton.clicked.connect(self.input_controller.use_shown)
        self.followLiveButton.clicked.connect(self.follow_live)

        q.changed.connect(self._on_queue_changed)
        q.changed.connect(self._update_follow_live)
        q.loadProgress.connect(self._on_load_progress)
        q.modelReady.connect(self._on_model_ready)
        q.modelFailed.connect(self._on_model_failed)
        q.jobStarted.connect(self._on_job_started)
        q.batchProgress.connect(self.imagePanel.show_batch_step)
        q.progress.connect(self.imagePanel.show_step)
        q.preview.connect(self._on_preview)
        q.finished.connect(self._on_finished)
        q.failed.connect(self._on_failed)
        q.cancelled.connect(self._on_cancelled)
        q.idle.connect(self._on_idle)

    # ======================================================================================
    # settings
    # ======================================================================================
    def _restore_settings(self, initial_model: str | None) -> None:
        s, c = self.settings, self.controls
        for source in known_models():
            c.add_model(source)
        for source in s.recent_models:
            if is_local(source) and not Path(source).expanduser().exists():
                continue  # a folder that was moved or deleted since
            c.add_model(source)
        c.set_quantize(s.startup_quantize())
        self.model_setup.apply_default_precision()  # Automatic on a first run: what this Mac's memory allows
        c.set_size(*s.size)
        c.countSpin.setValue(s.image_count)
        if (geometry := s.window_state("geometry")) is not None:
            self.restoreGeometry(geometry)
        if (splitter := s.window_state("splitter")) is not None:
            self.splitter.restoreState(splitter)
        restore_panels(self)

        model = initial_model or s.model or c.current_model()
        c.select_model(model)
        c.apply_variant(guess_variant(model), reset_values=True)
        if initial_model:
            s.model = initial_model
        # Warm up a local model straight away; a hub model might mean a big download, so that
        # waits until the person asks for it (Generate, or picking it in the list).
        if is_local(model):
            self.queue.load_model(ModelChoice(model, c.quantize()), self._size())
        self._update_model_status()
        self.model_setup.update_panel()

    def save_settings(self) -> None:
        s, c = self.settings, self.controls
        s.size = (c.widthSpin.value(), c.heightSpin.value())
        s.image_count = c.countSpin.value()
        s.quantize = c.quantize()
        if c.current_model():
            s.model = c.current_model()
        s.set_window_state("geometry", self.saveGeometry())
        s.set_window_state("splitter", self.splitter.saveState())
        s.sync()

    # ======================================================================================
    # generating
    # ======================================================================================
    def generate(self) -> list[Job]:
        """Queue the current settings (several images: consecutive or random seeds)."""
        params = self.controls.params()
        if not params.prompt:
            self.show_message("Type a prompt first: describe the image you want.", "info")
            self.promptEdit.setFocus()
            return []
        if not params.choice.source:
            self.show_message("Choose a model first.", "info")
            return []
        if self.input_controller.is_loading():
            self.show_message("The input image is still being read; press Generate again in a moment.", "info")
            return []
        params = self.mask_controller.apply(params)
        if params is None:
            return []
        count = self.countSpin.value()
        seeds = [None] * count if params.seed is None else [params.seed + i for i in range(count)]
        self.messageBar.dismiss()
        return self.submit([params.with_(seed=seed) for seed in seeds])

    def submit(self, requests: list[GenerationParams]) -> list[Job]:
        """Queue `requests`; the view follows the live previews again."""
        if requests and not self.model_setup.ready(requests[0].choice.source):
            return []  # a known model not on disk: the manager downloads it, not a hidden load
        self.follow_live()
        jobs = self.queue.submit(requests)
        self.viewer.note_submitted(jobs)  # several images of one submit: a grid once done
        return jobs

    def set_pinned(self, pinned: bool) -> None:
        """Keep the picked image in view while runs go on (True), or follow the runs (False)."""
        self.view.pinned = pinned
        self._update_follow_live()

    def follow_live(self) -> None:
        """Unpin the view: show the run under way (its newest preview at once) and follow it."""
        v = self.view
        if not v.pinned:
            return
        self.set_pinned(False)
        if self.queue.running is None:
            return
        if v.latest_preview is None and v.latest_finished is not None:
            # between two chunks: what a followed view shows until the next preview
            self.show_image(v.latest_finished)
            if v.latest_finished.entry_id is not None:
                self.refresh_history(select_id=v.latest_finished.entry_id)
            return
        self._show_generating(self.queue.running)
        if v.latest_preview is not None:
            self.previewView.set_image(v.latest_preview, preview=True)

    def _update_follow_live(self) -> None:
        """The "Show live preview" button is there only while a picked image is in view during a run."""
        self.followLiveButton.setVisible(self.view.pinned and self.queue.running is not None)

    # -- the history and restoring, for the menus, main.py and scripts --------------------------
    def refresh_history(self, select_id: int | None = None) -> None:
        self.history_controller.refresh_history(select_id)

    def selected_entry(self):
        return self.history_controller.selected_entry()

    def restore_from_file(self, path: Path) -> bool:
        return self.restorer.restore_from_file(path)

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        # Our own drag-out passing over the window is not a request to restore. A dropped
        # .safetensors file is a LoRA to add; an image, settings to restore.
        mime = event.mimeData()
        if event.source() is None and (self.lora_controller.dropped_loras(mime)
                                       or self.restorer.dropped_image(mime) is not None):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        loras = self.lora_controller.dropped_loras(event.mimeData())
        if loras:
            event.acceptProposedAction()
            self.lora_controller.add_dropped(loras)
            return
        path = self.restorer.dropped_image(event.mimeData())
        if path is not None:
            event.acceptProposedAction()
            self.restore_from_file(path)

    def cancel_all(self) -> None:
        self.run_control.cancel_all()

    def choose_model(self, source: str, keep_values: bool = False, load: bool = True) -> None:
        """Make `source` the current model and load it (with progress) on the worker.

        With load=False the model only becomes current; it loads when the person generates.
        """
        if not source:
            return
        self.controls.select_model(source)
        self.settings.model = source
        choice = ModelChoice(source, self.controls.quantize())
        self.settings.quantize = choice.quantize
        if self.model_info is None or self.model_info.choice.source != source:
            self.controls.apply_variant(guess_variant(source), reset_values=not keep_values)
        self.model_setup.update_panel()
        if self.model_info is not None and self.model_info.choice == choice or self.queue.loading == choice:
            return  # already warm, or on its way
        if load and self.model_setup.needs_download(source):
            load = False  # a 33 GB download waits for the model manager
        if load:
            self.queue.load_model(choice, self._size())
        self._update_model_status()

    def _size(self) -> tuple[int, int]:
        """The image size in the controls (what a freshly loaded model is warmed up for)."""
        return self.controls.widthSpin.value(), self.controls.heightSpin.value()

    def choose_model_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open Model Folder", self._model_dialog_dir())
        if folder:
            self.choose_model(folder)

    def choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open Model File", self._model_dialog_dir(),
                                              "FLUX checkpoint (*.safetensors)")
        if path and self.model_setup.check_file(path):  # a LoRA or SD file: said before any download
            self.choose_model(path)

    def _model_dialog_dir(self) -> str:
        current = self.controls.current_model()
        return str(Path(current).expanduser().parent) if current and is_local(current) else str(Path.home())

    # -- queue and worker events ---------------------------------------------------------------
    def _on_queue_changed(self) -> None:
        q = self.queue
        self.controls.set_busy(q.is_busy())
        self.queueList.clear()
        running = q.running_jobs
        jobs = running + q.pending
        for job in jobs:
            prompt = " ".join(job.params.prompt.split())
            state = "▶" if job in running else "◦"
            if q.is_cancelling(job):
                state += " cancelling…"
            # Seed first: it is what tells queued copies of one prompt apart; the view elides the rest.
            self.queueList.addItem(f"{state} seed {job.params.seed} · {prompt}")
            item = self.queueList.item(self.queueList.count() - 1)
            item.setData(Qt.ItemDataRole.UserRole, job.id)
            tip = f"{job.params.prompt}\nseed {job.params.seed} · {job.params.width}×{job.params.height}"
            if job in running and len(running) > 1:
                tip += f"\nbeing made together with {len(running) - 1} more (one batch)"
            item.setToolTip(tip)
        visible = len(jobs) > 1 or bool(q.pending)
        self.controls.queueLabel.setText(f"Queue ({len(jobs)})")
        self.controls.queueLabel.setVisible(visible)
        self.queueList.setVisible(visible)
        self._update_model_status()

    def _on_load_progress(self, message: str, fraction: float) -> None:
        text = self.imagePanel.show_loading(message, fraction)
        if not message.startswith("Applying LoRAs"):  # LoRAs switch on the loaded model
            self.modelStatusLabel.setText(f"Loading {display_name(self.controls.current_model())}…")
        if self.previewView.image().isNull():
            self.previewView.set_placeholder(text)

    def _on_model_ready(self, info: ModelInfo) -> None:
        self.model_info = info
        self.model_failure = None
        self.messageBar.dismiss_topic(MODEL_LOAD)  # "Could not load …" is not true any more
        current = self.controls.current_model()
        if info.choice.source == current:
            pending = self.view.pending_restore
            self.controls.apply_variant(info.variant, (info.default_steps, info.default_guidance),
                                        reset_values=pending is None and self.controls.variant != info.variant)
            if pending is not None:
                self.controls.apply_request(pending.request, prompt=False)
                self.view.pending_restore = None
        if not self.queue.is_busy():
            self.imagePanel.reset_progress("Ready")
        self.previewView.set_placeholder(PLACEHOLDER)
        self._update_model_status()

    def _on_model_failed(self, source: str, message: str) -> None:
        self.model_info = None
        self.view.pending_restore = None
        if source == self.controls.current_model():
            self.model_failure = (ModelChoice(source, self.controls.quantize()), message)
        self.show_message(f"Could not load the model “{display_name(source)}”: {message}", topic=MODEL_LOAD)
        self.imagePanel.reset_progress("Model not loaded")
        self.previewView.set_placeholder("The model could not be loaded.\nChoose another model or fix the "
                                         "one selected, then press Generate.")
        self._update_model_status()

    def _on_job_started(self, job: Job) -> None:
        self.view.latest_preview = self.view.latest_finished = None  # a new run: nothing to go back to yet
        self.imagePanel.start_run(job.params.steps or 1, job.params.width or 0, job.params.height or 0)
        if not self.view.pinned:
            self.imagePanel.show_result()  # from the mask editor to the image being made
            self._show_generating(job)

    def _show_generating(self, job: Job) -> None:
        # Until the final image arrives the view shows previews: say so, and keep the image
        # actions (which act on a finished image) out of reach meanwhile.
        p = job.params
        seeds = [j.params.seed for j in self.queue.running_jobs] or [p.seed]
        what = f"seed {p.seed}" if len(seeds) == 1 else f"{len(seeds)} images · seeds {_seed_list(seeds)}"
        self.imageInfoLabel.setText(f"Generating · {what} · {p.width}×{p.height} · {p.steps} steps")
        self._set_image_actions_enabled(False)

    def _on_preview(self, image: QImage) -> None:
        self.view.latest_preview = image
        if not self.view.pinned:
            if not self.previewView.is_preview() and self.queue.running is not None:
                # the next chunk's first preview replaces a finished image: its label and
                # actions must not stay with the image that left the view
                self._show_generating(self.queue.running)
            self.previewView.set_image(image, preview=True)

    def _on_finished(self, result: JobResult) -> None:
        params = result.params
        entry = None
        if result.saved_path is not None:
            try:
                entry = self.history.add(
                    params, result.saved_path, variant=result.model.variant, started_at=result.started_at,
                    created_at=result.finished_at, thumbnail=result.thumbnail,
                )
            except HistoryError as exc:
                self.show_message(f"{exc} The image is saved at {result.saved_path}.")
        else:
            self.show_message(f"The image was made but could not be saved: {result.save_error} "
                              "Use Export to save it somewhere else.")
        # A pinned view keeps the image the person is looking at (and its settings in the
        # controls); the new one waits in the history, unless it exists nowhere else.
        follow = not self.view.pinned or entry is None
        shown = Shown(result.image, params, result.saved_path, entry.id if entry else None)
        self.view.latest_preview, self.view.latest_finished = None, shown  # its chunk's previews are done
        if follow:
            self.show_image(shown)
            # Show the seed that was used, without locking it (random stays random).
            self.controls.set_seed(params.seed or 0, lock=False)
        if result.prompt_truncated and not self.messageBar.kind:
            self.show_message("The prompt is longer than the model reads; its end was ignored.", "info")
        if self.queue.running is None:  # not while more images of the same batch are coming
            self.imagePanel.show_done(f"Done in {format_duration(result.finished_at - result.started_at)}")
        if entry is not None:
            self.refresh_history(select_id=entry.id if follow else None)
        self._notify_finished(result)

    def _notify_finished(self, result: JobResult) -> None:
        """In the background: a badge per image, a notification when everything queued is done."""
        done = self.queue.running is None and not self.queue.pending
        prompt = " ".join(result.params.prompt.split())
        self.notifier.image_finished("Image ready" if done else "Image finished",
                                     f"{prompt[:80]} · seed {result.params.seed}", last=done)

    def _on_failed(self, job: Job, message: str) -> None:
        if not (self.messageBar.kind and message in self.messageBar.text()):  # a failed load said it already
            self.show_message(message)
        self._restore_shown()
        self.imagePanel.reset_progress("Failed")

    def _on_cancelled(self, job: Job) -> None:
        if self.queue.running is None:
            self._restore_shown()
            self.imagePanel.reset_progress("Cancelled")

    def _on_idle(self) -> None:
        self.controls.set_busy(False)
        if self.progressLabel.text().startswith(("Step", "Image", "Starting", "Cancelling", "Loading", "Applying",
                                             "Decoding", "Finishing", "Stopping")):
            self.imagePanel.reset_progress("Ready")

    def _update_model_status(self) -> None:
        info, current = self.model_info, self.controls.current_model()
        tip = ""
        if self.queue.loading is not None:
            text = f"Loading {display_name(self.queue.loading.source)}…"
        elif info is not None and info.choice.source == current:
            details = [info.variant] if info.variant.lower() not in info.name.lower() else []
            if info.choice.quantize:
                details.append(f"{info.choice.quantize}-bit")
            suffix = f" ({', '.join(details)})" if details else ""
            text = f"{info.name}{suffix} · ready"
        elif self.model_failure is not None and self.model_failure[0] == ModelChoice(current, self.controls.quantize()):
            # Until the model or its precision changes, or a retry (Generate) loads it again.
            text, tip = f"{display_name(current)} · failed to load", self.model_failure[1]
        elif current and self.model_setup.needs_download(current):
            # Generate opens the model manager for it, not a load: say what is missing.
            text, tip = f"{display_name(current)} · not downloaded", "File > Models… downloads it"
        else:
            text = f"{display_name(current)} · loads on Generate" if current else "No model chosen"
        self.modelStatusLabel.setText(text)
        self.modelStatusLabel.setToolTip(tip)

    # ======================================================================================
    # the shown image
    # ======================================================================================
    def show_image(self, shown: Shown) -> None:
        self.shown = shown
        self.previewView.set_image(shown.image)
        self.imagePanel.show_result()
        p = shown.params
        if p is not None:
            parts = [f"seed {p.seed}", f"{shown.image.width()}×{shown.image.height()}", f"{p.steps} steps"]
            if p.guidance is not None:
                parts.append(f"guidance {p.guidance:g}")
            parts.append(str(p.request.model or display_name(p.choice.source)))
            if p.request.loras:
                parts.append(f"LoRA {lora_text(p.request.loras)}")
            if (started_from := input_text(p.request)) is not None:
                parts.append(started_from)
            self.imageInfoLabel.setText(" · ".join(parts))
        else:
            self.imageInfoLabel.setText("")
        self.imageInfoLabel.setToolTip(str(shown.path or ""))
        self._update_image_actions()

    def _restore_shown(self) -> None:
        """Back to the last finished image after a failed or cancelled run."""
        if self.shown is not None:
            self.show_image(self.shown)
        else:
            self.clear_image()

    def clear_image(self) -> None:
        self.previewView.clear()
        self.imageInfoLabel.setText("")
        self._update_image_actions()

    def _set_image_actions_enabled(self, enabled: bool) -> None:
        for widget in (self.exportButton, self.copyImageButton, self.exportAction, self.copyImageAction,
                       self.revealButton, self.revealAction, self.reuseSeedButton, self.reuseSeedAction,
                       self.useAsInputButton, self.useAsInputAction):
            widget.setEnabled(enabled)

    def _update_image_actions(self) -> None:
        has_image = self.shown is not None and not self.shown.image.isNull()
        has_file = has_image and self.shown.path is not None and self.shown.path.is_file()
        for widget in (self.exportButton, self.copyImageButton, self.exportAction, self.copyImageAction,
                       self.useAsInputButton, self.useAsInputAction):
            widget.setEnabled(has_image)
        for widget in (self.revealButton, self.revealAction):
            widget.setEnabled(has_file)
        has_seed = has_image and self.shown.params is not None and self.shown.params.seed is not None
        for widget in (self.reuseSeedButton, self.reuseSeedAction):
            widget.setEnabled(has_seed)

    def image_mime(self) -> QMimeData | None:
        """What a drag-out or copy carries: the file (Finder, mail) and the pixels (editors)."""
        if self.shown is None or self.shown.image.isNull():
            return None
        mime = QMimeData()
        mime.setImageData(self.shown.image)
        if self.shown.path is not None and self.shown.path.is_file():
            mime.setUrls([QUrl.fromLocalFile(str(self.shown.path))])
        return mime

    def copy_image(self) -> None:
        # The pixels only, through setImage: a QMimeData made in Python and left on the
        # clipboard is deleted by Qt after Python has shut down, which crashes the app on quit.
        if self.shown is not None and not self.shown.image.isNull():
            QGuiApplication.clipboard().setImage(self.shown.image)
            self.statusBar().showMessage("Image copied", 3000)

    def reuse_seed(self) -> None:
        if self.shown is not None and self.shown.params is not None and self.shown.params.seed is not None:
            self.controls.set_seed(self.shown.params.seed, lock=True)
            self.statusBar().showMessage(f"Seed locked to {self.shown.params.seed}", 3000)

    def reveal_shown(self) -> None:
        if self.shown is not None and self.shown.path is not None and self.shown.path.is_file():
            reveal_in_file_manager(self.shown.path)

    def open_data_folder(self) -> None:
        reveal_in_file_manager(self.data_dir.images)

    def choose_export(self) -> None:
        """The Export button: ask where, then write."""
        if self.shown is None:
            return
        start = default_folder(self.settings.export_dir)
        p = self.shown.params
        name = default_name(p.prompt, p.seed) if p is not None else "flux.png"
        path, chosen = QFileDialog.getSaveFileName(self, "Export Image", str(start / name), ";;".join(dialog_filters()))
        if path:
            self.export_to(Path(path), format_for(Path(path), chosen))

    def export_to(self, path: Path, fmt: str | None = None) -> Path | None:
        """Write the shown image to `path` as png (with settings), jpeg or webp; None on failure."""
        if self.shown is None:
            return None
        fmt = fmt or format_for(Path(path))
        dest = with_extension(Path(path), fmt)
        if dest != Path(path) and dest.exists():  # the dialog confirmed replacing `path`, not this file
            self.show_message(f"{dest.name} already exists in {dest.parent}: choose another name.", "warning")
            return None
        try:
            written = export_image(qimage_to_pil(self.shown.image), self.shown.metadata, dest, fmt, self.shown.path)
        except Exception as exc:
            log.exception("export failed")
            self.show_message(f"Could not export the image: {describe_error(exc)}")
            return None
        self.settings.export_dir = str(written.parent)
        self.statusBar().showMessage(f"Exported {written.name}", 4000)
        return written

    # ======================================================================================
    # messages, about, closing
    # ======================================================================================
    def show_message(self, text: str, kind: str = "error", topic: str = "") -> None:
        log.info("message (%s): %s", kind, text)
        self.messageBar.show_message(text, kind, topic)

    def about(self) -> None:
        from mlx_flux import __version__

        QMessageBox.about(self, f"About {APP_DISPLAY_NAME}",
                          f"<b>{APP_DISPLAY_NAME}</b> {__version__}<br>FLUX.1 text-to-image, computed natively "
                          f"with MLX.<br><br>Data folder:<br>{self.data_dir.root}")

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self._closed:
            if not self.run_control.may_close(event):
                return  # asked, or stopping: it closes itself once the worker is idle
            self._closed = True
            try:
                self.run_control.save_unfinished()
                self.save_settings()
            except Exception:
                log.exception("saving settings failed")
            self.model_setup.shutdown()
            self.run_control.shutdown()
            self.history.close()
        super().closeEvent(event)


# The panels' widgets that are also attributes of the window (tests and scripts use them).
_EXPOSED = {
    "controls": ("promptEdit", "generateButton", "cancelButton", "stepsSlider", "guidanceSlider", "seedSpin",
                 "widthSpin", "heightSpin", "modelCombo", "quantizeCombo", "countSpin", "randomSeedCheck",
                 "aspectCombo", "queueList", "inputImageView", "strengthSlider"),
    "imagePanel": ("messageBar", "previewView", "maskPanel", "maskCanvas", "maskViewButton", "imageInfoLabel",
                   "reuseSeedButton", "useAsInputButton",
                   "copyImageButton",
                   "exportButton", "revealButton", "progressBar", "progressLabel", "followLiveButton"),
    "historyPanel": ("historySearch", "historyModel", "historyList", "historyCountLabel", "rerunButton",
                     "copyPromptButton", "deleteButton"),
}


def _seed_list(seeds: list[int | None]) -> str:
    """'1–4' for consecutive seeds, else '7, 12, 3' (shortened past five)."""
    if all(s is not None for s in seeds) and len(seeds) > 2 and \
            list(seeds) == list(range(seeds[0], seeds[0] + len(seeds))):
        return f"{seeds[0]}–{seeds[-1]}"
    text = ", ".join(str(s) for s in seeds[:5])
    return text + (" …" if len(seeds) > 5 else "")

