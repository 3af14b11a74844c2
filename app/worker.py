"""The one object that owns the engine. It lives on a background QThread; the GUI talks to it
only through queued signals and the thread-safe `cancel*` methods, and hears back through the
typed signals below.

All MLX work (import, model load, every generation step) happens on the worker's thread, so
the window stays responsive; widgets only ever receive QImages and plain data.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from app.errors import describe_error
from app.imaging import pil_to_qimage, thumbnail_png
from app.params import GenerationParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelChoice:
    """What to load: the same choice means the warm pipeline is reused."""

    source: str  # local folder, single .safetensors file, or hub repo id
    quantize: int | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What the GUI needs to know about the loaded model (ranges and defaults follow the variant)."""

    choice: ModelChoice
    name: str
    variant: str  # "schnell" | "dev"
    default_steps: int
    default_guidance: float | None  # None: the model has no guidance control


@dataclass(frozen=True)
class Job:
    id: int
    params: GenerationParams  # seed already chosen by the queue
    output_path: Path  # where the finished PNG goes


@dataclass(frozen=True)
class JobResult:
    job: Job
    image: QImage
    params: GenerationParams  # what was actually used (default steps/guidance filled in)
    model: ModelInfo
    metadata: dict[str, Any]
    started_at: float
    finished_at: float
    saved_path: Path | None  # None when saving failed (see save_error)
    save_error: str | None = None
    thumbnail: bytes = field(default=b"", repr=False)
    prompt_truncated: bool = False  # the text encoders cut the prompt short


# -- the engine calls, kept as module functions so tests can swap them -------------------------
def load_pipeline(choice: ModelChoice, progress: Callable[[str, float | None], None]) -> Any:
    from mlx_flux import FluxPipeline  # imported here: the GUI thread never loads MLX

    return FluxPipeline.from_pretrained(choice.source, quantize=choice.quantize, progress=progress)


def save_image(image: Any, path: Path, metadata: dict[str, Any]) -> None:
    from mlx_flux.metadata import save_png

    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(image, path, metadata)


def _cancelled_error() -> type[BaseException]:
    from mlx_flux.errors import Cancelled

    return Cancelled


def _free_memory() -> None:
    """Give MLX's buffer cache back after a model switch or a cancelled run."""
    gc.collect()
    try:
        import mlx.core as mx

        mx.clear_cache()
    except Exception:  # an older MLX or none at all: nothing to free
        pass


class Worker(QObject):
    loadProgress = Signal(str, float)  # message, fraction 0..1 (or -1 when unknown) while loading
    modelReady = Signal(object)  # ModelInfo, once a model is loaded and warm
    modelFailed = Signal(str, str)  # model source, user-facing message
    jobStarted = Signal(int)  # job id, when the worker picks it up
    progress = Signal(int, int, float)  # step (1-based), total steps, seconds elapsed
    preview = Signal(QImage)  # the predicted clean image at the latest step
    finished = Signal(object)  # JobResult
    failed = Signal(int, str)  # job id, user-facing message
    cancelled = Signal(int)  # job id; the worker is ready for the next job

    def __init__(self) -> None:
        super().__init__()
        self._pipe: Any = None
        self._info: ModelInfo | None = None
        self._lock = threading.Lock()
        self._cancelled_jobs: set[int] = set()
        self._cancel_load = False
        self._loaded_now: ModelInfo | None = None  # set by the load that modelReady announced

    # -- thread-safe, called from the GUI thread -------------------------------------------
    def cancel(self, job_id: int) -> None:
        """Stop job `job_id` at its next step (or skip it if it has not started)."""
        with self._lock:
            self._cancelled_jobs.add(job_id)

    def cancel_load(self) -> None:
        """Abandon a model load/download at its next progress report."""
        with self._lock:
            self._cancel_load = True

    def _is_cancelled(self, job_id: int | None) -> bool:
        with self._lock:
            return self._cancel_load if job_id is None else job_id in self._cancelled_jobs

    # -- slots, run on the worker thread ---------------------------------------------------
    @Slot(object)
    def load(self, choice: ModelChoice) -> None:
        with self._lock:
            self._cancel_load = False
        try:
            info = self._ensure_model(choice, job_id=None)
        except Exception as exc:
            self._report_model_failure(choice, exc)
        else:
            if self._loaded_now is not info:
                self.modelReady.emit(info)  # already warm: still answer the request

    @Slot(object)
    def run(self, job: Job) -> None:
        try:
            self._run(job)
        finally:
            with self._lock:
                self._cancelled_jobs.discard(job.id)
                self._cancel_load = False

    @Slot()
    def unload(self) -> None:
        """Let go of the model (at shutdown: the process is about to free everything anyway)."""
        self._pipe = self._info = None

    # -- internals --------------------------------------------------------------------------
    def _run(self, job: Job) -> None:
        if self._is_cancelled(job.id):
            self.cancelled.emit(job.id)
            return
        self.jobStarted.emit(job.id)
        params = job.params
        choice = ModelChoice(params.model, params.quantize)
        cancelled_error = _cancelled_error()
        try:
            info = self._ensure_model(choice, job_id=job.id)
        except cancelled_error:
            self.cancelled.emit(job.id)
            return
        except Exception as exc:
            self.failed.emit(job.id, self._report_model_failure(choice, exc))
            return

        started_at = time.time()

        def on_step(event: Any) -> None:
            # The engine calls this between steps: the only place a run can stop cleanly.
            if self._is_cancelled(job.id):
                raise cancelled_error("Cancelled")
            try:
                self.preview.emit(pil_to_qimage(event.preview()))
            except Exception:  # a preview is a nicety; never let it kill the run
                log.debug("preview failed", exc_info=True)
            self.progress.emit(int(event.step), int(event.total), float(event.elapsed))
            if self._is_cancelled(job.id):
                raise cancelled_error("Cancelled")

        try:
            result = self._pipe.generate(
                params.prompt, width=params.width, height=params.height, steps=params.steps,
                guidance=params.guidance if info.default_guidance is not None else None,
                seed=params.seed, callback=on_step,
            )
        except cancelled_error:
            _free_memory()
            self.cancelled.emit(job.id)
            return
        except Exception as exc:
            log.exception("generation failed")
            _free_memory()
            self.failed.emit(job.id, describe_error(exc))
            return

        self.finished.emit(self._finish(job, info, result, started_at))

    def _finish(self, job: Job, info: ModelInfo, result: Any, started_at: float) -> JobResult:
        metadata = dict(getattr(result, "metadata", None) or {})
        used = job.params.with_(
            seed=int(result.seed),
            steps=int(metadata.get("steps") or job.params.steps or info.default_steps),
            guidance=_float_or_none(metadata.get("guidance", job.params.guidance))
            if info.default_guidance is not None else None,
            width=result.image.width,
            height=result.image.height,
        )
        finished_at = time.time()
        saved_path: Path | None = job.output_path
        save_error = None
        try:
            save_image(result.image, job.output_path, metadata)
        except Exception as exc:  # disk full, unwritable folder...: keep the image on screen anyway
            log.exception("saving %s failed", job.output_path)
            saved_path, save_error = None, describe_error(exc)
        return JobResult(
            job=job, image=pil_to_qimage(result.image), params=used, model=info, metadata=metadata,
            started_at=started_at, finished_at=finished_at, saved_path=saved_path,
            save_error=save_error, thumbnail=thumbnail_png(result.image),
            prompt_truncated=bool(getattr(result, "prompt_truncated", False)),
        )

    def _ensure_model(self, choice: ModelChoice, job_id: int | None) -> ModelInfo:
        """The warm pipeline for `choice`, loading it (and dropping any other) if needed."""
        if self._info is not None and self._info.choice == choice:
            self._loaded_now = None
            return self._info
        if self._pipe is not None:
            # Two full models rarely fit in memory: let go of the old one before loading.
            self._pipe = self._info = None
            _free_memory()
        cancelled_error = _cancelled_error()

        def on_progress(message: str, fraction: float | None) -> None:
            if self._is_cancelled(job_id) or self._is_cancelled(None):
                raise cancelled_error("Cancelled")
            self.loadProgress.emit(str(message), -1.0 if fraction is None else float(fraction))

        self.loadProgress.emit(f"Loading {_short_name(choice.source)}…", -1.0)
        pipe = load_pipeline(choice, on_progress)
        guidance = getattr(pipe, "default_guidance", None)
        info = ModelInfo(
            choice=choice,
            name=str(getattr(pipe, "model_name", "") or _short_name(choice.source)),
            variant=str(getattr(pipe, "variant", "schnell")),
            default_steps=int(getattr(pipe, "default_steps", 4)),
            default_guidance=None if guidance is None else float(guidance),
        )
        self._pipe, self._info = pipe, info
        self._loaded_now = info
        self.modelReady.emit(info)
        return info

    def _report_model_failure(self, choice: ModelChoice, exc: BaseException) -> str:
        if isinstance(exc, _cancelled_error()):
            message = "Model loading was cancelled."
        else:
            log.exception("loading %s failed", choice.source)
            message = describe_error(exc)
        self.modelFailed.emit(choice.source, message)
        return message


def _short_name(source: str) -> str:
    return Path(source).name or source


def _float_or_none(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None
