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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtGui import QImage

from app.errors import describe_error
from app.imaging import pil_to_qimage, thumbnail_png
from app.params import GenerationParams, LoraChoice, ModelChoice

log = logging.getLogger(__name__)

__all__ = ["Job", "JobResult", "LoadRequest", "ModelChoice", "ModelInfo", "Run", "Worker"]


@dataclass(frozen=True)
class LoadRequest:
    """Load `choice` ahead of any job and warm it up for images of width x height."""

    choice: ModelChoice
    width: int | None = None
    height: int | None = None


@dataclass(frozen=True)
class ModelInfo:
    """What the GUI needs to know about the loaded model (ranges and defaults follow the variant)."""

    choice: ModelChoice
    name: str
    variant: str  # "schnell" | "dev" | "kontext" (a Kontext model edits its input image)
    default_steps: int
    default_guidance: float | None  # None: the model has no guidance control


@dataclass(frozen=True)
class Job:
    """One image in the queue: a queue id and its settings (the seed already chosen by the queue)."""

    id: int
    params: GenerationParams


@dataclass(frozen=True)
class Run:
    """What the worker is handed at once: one job, or jobs differing only in seed (one batch),
    and where each one's PNG goes."""

    jobs: tuple[Job, ...]
    paths: tuple[Path, ...]

    @property
    def params(self) -> GenerationParams:
        return self.jobs[0].params

    def path_of(self, job: Job) -> Path:
        return self.paths[self.jobs.index(job)]


@dataclass(frozen=True)
class JobResult:
    job: Job
    image: QImage
    params: GenerationParams  # the choice, and the engine's resolved request: what made the image
    model: ModelInfo
    started_at: float
    finished_at: float
    saved_path: Path | None  # None when saving failed (see save_error)
    save_error: str | None = None
    thumbnail: bytes = field(default=b"", repr=False)
    prompt_truncated: bool = False  # the text encoders cut the prompt short
    decode_seconds: float | None = None  # the VAE decode's share of this image (None: not measured)

    @property
    def request(self) -> Any:
        return self.params.request

    @property
    def metadata(self) -> dict[str, Any]:
        """What the PNG holds: the resolved request's metadata."""
        return self.params.request.to_metadata()


# -- the engine calls, kept as module functions so tests can swap them -------------------------
def load_pipeline(choice: ModelChoice, progress: Callable[[str, float | None], None]) -> Any:
    from mlx_flux import FluxPipeline  # imported here: the GUI thread never loads MLX

    return FluxPipeline.from_pretrained(choice.source, quantize=choice.quantize, progress=progress)


def save_image(image: Any, path: Path, metadata: dict[str, Any]) -> Path:
    """Save a new image as `path`, or as `path` with -2, -3... when that name is taken, even by
    another app running on the same data folder at the same moment: the file is created
    exclusively, so no image ever replaces another. Returns the path written."""
    from mlx_flux.metadata import save_png

    path.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 1000):
        candidate = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
        try:
            return save_png(image, candidate, metadata, overwrite=False)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for {path.name} in {path.parent}")


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
    loadProgress = Signal(str, float)  # message, fraction 0..1 (or -1 when unknown) while loading/warming
    modelReady = Signal(object)  # ModelInfo, once a model is loaded and warm
    modelFailed = Signal(str, str)  # model source, user-facing message
    loraFailed = Signal(str, str)  # the LoRA file that could not be applied, user-facing message
    jobStarted = Signal(int)  # id of the first job of a run, when the worker picks the run up
    progress = Signal(int, int, float)  # step (1-based), total steps, seconds elapsed (over a whole batch)
    # A batch only, just before each progress: the images being made, first..last (1-based) of
    # the run's count, and the step / steps of that chunk.
    batchProgress = Signal(int, int, int, int, int)  # first, last, count, step, steps
    preview = Signal(QImage)  # the predicted clean image at the latest step (a batch: its chunk's first)
    phase = Signal(str)  # the engine's phase after the steps ("decode"; a batch: once per chunk)
    finished = Signal(object)  # JobResult, one per image, in seed order within a batch
    failed = Signal(int, str)  # job id, user-facing message; stands for every unfinished job of its run
    cancelled = Signal(int)  # job id

    # A run is one job (`generate`) or several jobs differing only in seed (`generate_batch`).
    # Each job of a run ends with exactly one finished/cancelled, unless the run fails: then a
    # single `failed` names its first unfinished job and ends all of them.

    def __init__(self) -> None:
        super().__init__()
        self._pipe: Any = None
        self._info: ModelInfo | None = None
        self._lock = threading.Lock()
        self._cancelled_jobs: set[int] = set()
        self._cancel_load = False
        self._loaded_now: ModelInfo | None = None  # set by the load that modelReady announced
        self._runs_waiting = 0  # runs the queue has sent that have not started: warm-up skips then
        # The LoRA set last applied to the pipeline; None: unknown (after a failed set_loras).
        self._applied: tuple[LoraChoice, ...] | None = ()
        # Live previews (Preferences): off skips decoding them; the window shows the step counter.
        self.previews = True

    # -- thread-safe, called from the GUI thread -------------------------------------------
    def cancel(self, job_id: int) -> None:
        """Stop job `job_id` at its next step (or skip it if it has not started)."""
        with self._lock:
            self._cancelled_jobs.add(job_id)

    def cancel_load(self) -> None:
        """Abandon a model load/download at its next progress report."""
        with self._lock:
            self._cancel_load = True

    def note_run_requested(self) -> None:
        """The queue has sent a run; a load ahead of it should not spend time warming up."""
        with self._lock:
            self._runs_waiting += 1

    def _is_cancelled(self, job_id: int | None) -> bool:
        with self._lock:
            return self._cancel_load if job_id is None else job_id in self._cancelled_jobs

    # -- slots, run on the worker thread ---------------------------------------------------
    @Slot(object)
    def load(self, request: LoadRequest | ModelChoice) -> None:
        if isinstance(request, ModelChoice):
            request = LoadRequest(request)
        with self._lock:
            self._cancel_load = False
        warm = (request.width, request.height) if request.width and request.height else None
        try:
            info = self._ensure_model(request.choice, job_ids=None, warm=warm)
        except Exception as exc:
            self._report_model_failure(request.choice, exc)
        else:
            if self._loaded_now is not info:
                self.modelReady.emit(info)  # already warm: still answer the request

    @Slot(object)
    def run(self, run: Run) -> None:
        """Run one job, or several jobs that differ only in seed as one batch."""
        with self._lock:
            self._runs_waiting = max(0, self._runs_waiting - 1)
        try:
            self._run(run)
        finally:
            with self._lock:
                self._cancelled_jobs.difference_update(job.id for job in run.jobs)
                self._cancel_load = False

    @Slot()
    def unload(self) -> None:
        """Let go of the model (at shutdown: the process is about to free everything anyway)."""
        self._pipe = self._info = None

    # -- internals --------------------------------------------------------------------------
    def _run(self, run: Run) -> None:
        live = self._drop_cancelled(list(run.jobs))
        if not live:
            return
        first = live[0]
        self.jobStarted.emit(first.id)
        choice = run.params.choice
        cancelled_error = _cancelled_error()
        try:
            info = self._ensure_model(choice, job_ids=[job.id for job in live])
        except cancelled_error:
            for job in live:
                self.cancelled.emit(job.id)
            return
        except Exception as exc:
            self.failed.emit(first.id, self._report_model_failure(choice, exc))
            return
        try:
            self._apply_loras(run.params.loras)
        except Exception as exc:
            self.failed.emit(first.id, self._report_lora_failure(run.params.loras, exc))
            return
        if len(live) == 1:
            self._run_single(run, first, info)
        else:
            self._run_batch(run, live, info)

    def _apply_loras(self, loras: tuple[LoraChoice, ...]) -> None:
        """Make `loras` the pipeline's active set, unless they already are (no model reload:
        the engine switches LoRAs on the loaded weights)."""
        if loras == self._applied:
            return
        self.loadProgress.emit("Applying LoRAs…", -1.0)
        self._applied = None  # until the engine says it worked
        self._pipe.set_loras([(lora.path, lora.scale) for lora in loras])
        self._applied = loras

    def _report_lora_failure(self, loras: tuple[LoraChoice, ...], exc: BaseException) -> str:
        """Say which LoRA failed and why; the model stays loaded for the next run."""
        log.warning("applying LoRAs %s failed", loras, exc_info=True)
        message = describe_error(exc)
        self.loraFailed.emit(_failed_lora(loras, exc) or "", message)
        return message

    def _step_reporter(self, stop: Callable[[], bool], offset: int = 0, total: int | None = None,
                       started: float | None = None,
                       images: tuple[int, int, int] | None = None) -> Callable[[Any], None]:
        """The engine's step callback: previews, progress, and the only place a run can stop.

        offset/total/started renumber the steps of one chunk over a whole batch; images
        (first, last, count) says which images of the batch the chunk makes."""
        cancelled_error = _cancelled_error()

        def on_step(event: Any) -> None:
            if stop():
                raise cancelled_error("Cancelled")
            try:
                if self.previews:
                    self.preview.emit(pil_to_qimage(event.preview()))
            except Exception:  # a preview is a nicety; never let it kill the run
                log.debug("preview failed", exc_info=True)
            elapsed = float(event.elapsed) if started is None else time.time() - started
            if images is not None:
                self.batchProgress.emit(*images, int(event.step), int(event.total))
            self.progress.emit(offset + int(event.step), int(total or event.total), elapsed)
            if stop():
                raise cancelled_error("Cancelled")

        return on_step

    def _phase_reporter(self, stop: Callable[[], bool], clock: _DecodeClock) -> Callable[[str], None]:
        """The engine's phase callback: the decode beginning. Cancelled before it, nothing is
        decoded; cancelled during it (it cannot stop), the caller discards what it makes."""
        cancelled_error = _cancelled_error()

        def on_phase(phase: str) -> None:
            if stop():
                raise cancelled_error("Cancelled")
            clock.start()
            self.phase.emit(str(phase))

        return on_phase

    def _run_single(self, run: Run, job: Job, info: ModelInfo) -> None:
        cancelled_error = _cancelled_error()
        started_at = time.time()
        clock = _DecodeClock()
        stop = lambda: self._is_cancelled(job.id)  # noqa: E731
        try:
            result = self._pipe.generate(job.params.request, image=_input_path(job.params),
                                         mask=_mask_path(job.params), callback=self._step_reporter(stop),
                                         on_phase=self._phase_reporter(stop, clock))
        except cancelled_error:
            _free_memory()
            self.cancelled.emit(job.id)
            return
        except Exception as exc:
            log.exception("generation failed")
            _free_memory()
            self.failed.emit(job.id, describe_error(exc))
            return
        if self._is_cancelled(job.id):  # cancelled while it decoded: discarded, no file, no entry
            _free_memory()
            self.cancelled.emit(job.id)
            return
        self.finished.emit(self._finish(job, run.path_of(job), info, result, started_at, clock.seconds(1)))

    def _run_batch(self, run: Run, jobs: list[Job], info: ModelInfo) -> None:
        """Several seeds of one request: the prompt encoded once, the transformer on a batch.

        The engine's `generate_batch` chunks a batch to fit memory, but returns only once every
        chunk is done. So that each chunk's images are saved (and shown) as soon as they exist,
        and a cancel loses only the chunk in progress, this is the app's one chunk loop: it asks
        the engine for its chunk size (`auto_max_batch`) and makes one `generate_batch` call per
        chunk with that `max_batch`. (An engine hook reporting each finished chunk would let
        this become a single call.)"""
        request = run.params.request
        cancelled_error = _cancelled_error()
        steps = request.steps or info.default_steps
        size = _chunk_size(self._pipe, request.width, request.height, len(jobs))
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        total = len(chunks) * steps
        number = {job.id: i + 1 for i, job in enumerate(jobs)}  # stays put when a job is dropped
        started_at = time.time()
        for k, chunk in enumerate(chunks):
            chunk = self._drop_cancelled(chunk)  # removed from the queue while earlier chunks ran
            if not chunk:
                continue
            ids = [job.id for job in chunk]
            clock = _DecodeClock()
            stop = lambda: all(self._is_cancelled(i) for i in ids)  # noqa: E731 - every image of the chunk
            try:
                results = self._pipe.generate_batch(
                    request, seeds=[job.params.seed for job in chunk],
                    callback=self._step_reporter(stop, offset=k * steps, total=total, started=started_at,
                                                 images=(number[ids[0]], number[ids[-1]], len(jobs))),
                    max_batch=len(chunk), image=_input_path(run.params), mask=_mask_path(run.params),
                    on_phase=self._phase_reporter(stop, clock),
                )
            except cancelled_error:
                _free_memory()
                for job in chunk:
                    self.cancelled.emit(job.id)
                continue  # later chunks run unless they were cancelled too
            except Exception as exc:
                log.exception("batch generation failed")
                _free_memory()
                self.failed.emit(chunk[0].id, describe_error(exc))
                return
            decode = clock.seconds(len(chunk))  # now: before the images are saved
            for job, result in zip(chunk, results):
                if self._is_cancelled(job.id):  # removed while its chunk ran (or decoded): not kept
                    self.cancelled.emit(job.id)
                else:
                    self.finished.emit(self._finish(job, run.path_of(job), info, result, started_at, decode))

    def _drop_cancelled(self, jobs: list[Job]) -> list[Job]:
        """`jobs` less the cancelled ones, each of which is reported cancelled."""
        live = []
        for job in jobs:
            if self._is_cancelled(job.id):
                self.cancelled.emit(job.id)
            else:
                live.append(job)
        return live

    def _finish(self, job: Job, path: Path, info: ModelInfo, result: Any, started_at: float,
                decode_seconds: float | None = None) -> JobResult:
        """Save the image with the engine's resolved request (what made it) and report it."""
        used = replace(job.params, request=result.request)
        finished_at = time.time()
        saved_path: Path | None = path
        save_error = None
        try:
            saved_path = save_image(result.image, path, result.metadata) or path
        except Exception as exc:  # disk full, unwritable folder...: keep the image on screen anyway
            log.exception("saving %s failed", path)
            saved_path, save_error = None, describe_error(exc)
        return JobResult(
            job=job, image=pil_to_qimage(result.image), params=used, model=info,
            started_at=started_at, finished_at=finished_at, saved_path=saved_path,
            save_error=save_error, thumbnail=thumbnail_png(result.image),
            prompt_truncated=bool(result.prompt_truncated), decode_seconds=decode_seconds,
        )

    def _ensure_model(self, choice: ModelChoice, job_ids: list[int] | None,
                      warm: tuple[int, int] | None = None) -> ModelInfo:
        """The warm pipeline for `choice`, loading it (and dropping any other) if needed.

        warm: after a load, compile/warm the pipeline for images of this size before
        announcing it, unless a run is already waiting (that run warms it up itself)."""
        if self._info is not None and self._info.choice == choice:
            self._loaded_now = None
            return self._info
        if self._pipe is not None:
            # Two full models rarely fit in memory: let go of the old one before loading.
            self._pipe = self._info = None
            _free_memory()
        cancelled_error = _cancelled_error()

        def on_progress(message: str, fraction: float | None) -> None:
            if self._is_cancelled(None) or job_ids and all(self._is_cancelled(i) for i in job_ids):
                raise cancelled_error("Cancelled")
            self.loadProgress.emit(str(message), -1.0 if fraction is None else float(fraction))

        self.loadProgress.emit(f"Loading {_short_name(choice.source)}…", -1.0)
        pipe = load_pipeline(choice, on_progress)
        guidance = pipe.default_guidance  # the engine's attributes (mlx_flux.engine.Engine)
        info = ModelInfo(
            choice=choice,
            name=str(pipe.model_name or _short_name(choice.source)),
            variant=str(pipe.variant),
            default_steps=int(pipe.default_steps),
            default_guidance=None if guidance is None else float(guidance),
        )
        self._pipe, self._info = pipe, info
        # A freshly loaded model has no LoRAs; one that comes with some (a cached pipeline) is
        # given its set at the next run.
        self._applied = None if getattr(pipe, "loras", ()) else ()
        if warm is not None:
            self._warm_up(*warm)
        self._loaded_now = info
        self.modelReady.emit(info)
        return info

    def _warm_up(self, width: int, height: int) -> None:
        """The first generation as fast as later ones: the engine compiles and warms up now,
        while the person is still typing. Never fatal, skipped when a run is waiting."""
        with self._lock:
            waiting = self._runs_waiting > 0 or self._cancel_load
        if waiting:
            return
        self.loadProgress.emit("Warming up…", -1.0)
        try:
            seconds = self._pipe.warmup(width, height)
            log.info("warm-up at %dx%d took %.1f s", width, height, seconds or 0.0)
        except Exception:  # e.g. out of memory at a huge size: the real run will say so
            log.warning("warm-up failed", exc_info=True)
            _free_memory()

    def _report_model_failure(self, choice: ModelChoice, exc: BaseException) -> str:
        if isinstance(exc, _cancelled_error()):
            message = "Model loading was cancelled."
        else:
            log.exception("loading %s failed", choice.source)
            message = describe_error(exc)
        self.modelFailed.emit(choice.source, message)
        return message


class _DecodeClock:
    """When the engine said its decode began; read once, as soon as the generation has returned."""

    def __init__(self) -> None:
        self._started: float | None = None

    def start(self) -> None:
        self._started = time.monotonic()

    def seconds(self, images: int) -> float | None:
        """The decode's time per image so far (None: the engine never announced it)."""
        if self._started is None:
            return None
        return (time.monotonic() - self._started) / max(1, images)


def _input_path(params: GenerationParams) -> str | None:
    """The input image the engine reads (on this thread: decoding a large photo takes a moment)."""
    return params.input.path if params.input is not None else None


def _mask_path(params: GenerationParams) -> str | None:
    """A Fill model's mask (its margins travel in the request's `expand`)."""
    return params.mask.path if params.mask is not None else None


def _chunk_size(pipe: Any, width: int, height: int, count: int) -> int:
    """How many images of this size one transformer batch may hold (the engine's own choice)."""
    try:
        return max(1, min(count, int(pipe.auto_max_batch(width, height))))
    except Exception:  # an engine (or stand-in) that does not say: one batch
        return count


def _failed_lora(loras: tuple[LoraChoice, ...], exc: BaseException) -> str | None:
    """The file among `loras` that made set_loras fail: the one its message names (the engine's
    messages start with the file name), else the first one that does not read on its own."""
    text = str(exc)
    named = [lora.path for lora in loras if Path(lora.path).name in text]
    if named:
        return max(named, key=lambda p: (text.startswith(Path(p).name), len(Path(p).name)))
    try:
        from mlx_flux.lora_formats import read_lora  # worker thread: MLX is allowed here
    except Exception:
        return None
    for lora in loras:
        try:
            read_lora(lora.path)
        except Exception:
            return lora.path
    return None


def _short_name(source: str) -> str:
    return Path(source).name or source

