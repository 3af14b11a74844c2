"""The generation queue, on the GUI side of the worker.

Pending jobs stay here (not in the worker's event queue) so the window can list them and
drop any of them instantly. The worker is handed one run at a time: the next job plus the
jobs queued right behind it that differ only in seed (the "Batch N images" control, or the
same prompt queued again), which the engine makes as one batch. Every job stays its own
queue item, history entry and PNG. Everything in this module runs on the GUI thread.
"""

from __future__ import annotations

import random
import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtGui import QImage

from app.params import SEED_MAX, GenerationParams
from app.worker import Job, JobResult, LoadRequest, ModelChoice, ModelInfo, Run, Worker

MAX_RUN = 16  # jobs handed to the worker at once (it splits them into chunks that fit memory)

# Every worker thread with its worker, held until the thread has finished: Qt aborts the process
# when a running QThread is destroyed, which a queue deleted mid-run (its window torn down
# without a close) would otherwise do. Such a thread is told to quit and ends after its run.
_LIVE: dict[int, tuple[QThread, Worker]] = {}


def batch_key(params: GenerationParams) -> GenerationParams:
    """Jobs with equal keys differ only in seed and can be generated as one batch (same model,
    same LoRAs and scales, same input image, same request otherwise)."""
    return params.with_(seed=None)


class JobQueue(QObject):
    changed = Signal()  # the pending list or the running job changed
    loadProgress = Signal(str, float)  # forwarded from the worker
    modelReady = Signal(object)  # ModelInfo
    modelFailed = Signal(str, str)  # source, message
    loraFailed = Signal(str, str)  # LoRA file, message (before the failed of its run)
    jobStarted = Signal(object)  # Job
    progress = Signal(int, int, float)  # step, total, elapsed seconds
    batchProgress = Signal(int, int, int, int, int)  # first, last image of the chunk, count, step, steps
    preview = Signal(QImage)
    phase = Signal(str)  # forwarded: "decode" once the steps of a run (a batch: of a chunk) are done
    finished = Signal(object)  # JobResult
    failed = Signal(object, str)  # Job, message
    cancelled = Signal(object)  # Job
    idle = Signal()  # nothing running and nothing pending

    # Requests to the worker; queued across threads, so they run in order on its thread.
    _runRequested = Signal(object)
    _loadRequested = Signal(object)

    def __init__(self, images_dir: Path, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.images_dir = images_dir
        self._pending: deque[Job] = deque()
        self._running: list[Job] = []  # the jobs of the run the worker has, still unfinished
        self._run_ids: set[int] = set()  # every job of that run, including ones removed since
        self._cancelling: set[int] = set()
        self._loading: ModelChoice | None = None
        self._next_id = 1

        self._thread = QThread()
        self._thread.setObjectName("flux-worker")
        self.worker = Worker()
        self.worker.moveToThread(self._thread)
        self._runRequested.connect(self.worker.run)
        self._loadRequested.connect(self.worker.load)
        # The worker's step events pass straight through (re-emitted on this, the GUI, thread);
        # the others first update the queue.
        for name in ("loadProgress", "batchProgress", "progress", "preview", "phase"):
            getattr(self.worker, name).connect(getattr(self, name))
        self.worker.modelReady.connect(self._on_model_ready)
        self.worker.modelFailed.connect(self._on_model_failed)
        self.worker.loraFailed.connect(self._on_lora_failed)
        self.worker.jobStarted.connect(self._on_started)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        for key, (thread, _) in list(_LIVE.items()):  # let go here, never from the thread itself
            if thread.isFinished():
                del _LIVE[key]
        _LIVE[id(self._thread)] = (self._thread, self.worker)
        self.destroyed.connect(self._thread.quit)
        self._thread.start()

    # -- state ------------------------------------------------------------------------------
    @property
    def running(self) -> Job | None:
        """The first unfinished job of the current run (None when the worker is idle)."""
        return self._running[0] if self._running else None

    @property
    def running_jobs(self) -> list[Job]:
        """All unfinished jobs of the current run (several when it is a batch)."""
        return list(self._running)

    @property
    def pending(self) -> list[Job]:
        return list(self._pending)

    @property
    def loading(self) -> ModelChoice | None:
        return self._loading

    def is_busy(self) -> bool:
        return bool(self._running) or bool(self._pending) or self._loading is not None

    def is_cancelling(self, job: Job) -> bool:
        return job.id in self._cancelling

    # -- requests ---------------------------------------------------------------------------
    def submit(self, requests: list[GenerationParams]) -> list[Job]:
        """Queue one job per request; a request without a seed gets a random one now, so the
        queue can show it and the image can be remade."""
        jobs = []
        for params in requests:
            if params.seed is None:
                params = params.with_(seed=random.randint(0, SEED_MAX))
            jobs.append(Job(id=self._next_id, params=params))
            self._next_id += 1
        self._pending.extend(jobs)
        self.changed.emit()
        self._dispatch()
        return jobs

    def load_model(self, choice: ModelChoice, size: tuple[int, int] | None = None) -> None:
        """Load (or keep warm) `choice` now, after whatever the worker is doing; with `size`,
        warm it up for images of that width x height once loaded."""
        self._loading = choice
        self.changed.emit()
        self._loadRequested.emit(LoadRequest(choice, *(size or (None, None))))

    def cancel(self, job_id: int) -> None:
        """Drop a pending job, or stop the running one at its next step."""
        for job in list(self._pending):
            if job.id == job_id:
                self._pending.remove(job)
                self.changed.emit()
                self.cancelled.emit(job)
                self._emit_idle_if_done()
                return
        job = next((j for j in self._running if j.id == job_id), None)
        if job is None:
            return
        self.worker.cancel(job_id)
        if any(j.id not in self._cancelling for j in self._running if j is not job):
            # One image of a batch that goes on: it leaves the queue now and is not kept.
            self._running.remove(job)
            self.changed.emit()
            self.cancelled.emit(job)
        else:  # the last image of the run: it stops at its next step
            self._cancelling.add(job_id)
            self.changed.emit()

    def cancel_all(self) -> None:
        dropped = list(self._pending)
        self._pending.clear()
        for job in dropped:
            self.cancelled.emit(job)
        if self._loading is not None:
            self.worker.cancel_load()
        for job in self._running:
            self._cancelling.add(job.id)
            self.worker.cancel(job.id)
        self.changed.emit()
        self._emit_idle_if_done()

    def take_pending(self) -> list[Job]:
        """Take every pending job out of the queue (to keep them for later): not cancelled, gone."""
        taken = list(self._pending)
        self._pending.clear()
        self.changed.emit()
        self._emit_idle_if_done()
        return taken

    def shutdown(self, timeout_ms: int = 60_000) -> None:
        """Stop everything and the thread; returns once the worker has let go of the model."""
        if not self._thread.isRunning():
            return
        self.cancel_all()
        self._thread.quit()  # the current job ends at its next step, then the loop exits
        if self._thread.wait(timeout_ms):
            self.worker.unload()  # only once its thread is done with it

    # -- worker events ----------------------------------------------------------------------
    def _dispatch(self) -> None:
        if self._running or not self._pending:
            return
        run = [self._pending.popleft()]
        key = batch_key(run[0].params)
        while self._pending and len(run) < MAX_RUN and batch_key(self._pending[0].params) == key:
            run.append(self._pending.popleft())
        taken: set[Path] = set()
        self._running = run
        self._run_ids = {job.id for job in run}
        self.changed.emit()
        self.worker.note_run_requested()
        self._runRequested.emit(Run(tuple(run), tuple(self._output_path(job, taken) for job in run)))

    def _output_path(self, job: Job, taken: set[Path]) -> Path:
        """images/YYYY-MM-DD/HHMMSS-<seed>.png, never overwriting an earlier image (nor one
        reserved for another image of the same run)."""
        now = time.localtime()
        folder = self.images_dir / time.strftime("%Y-%m-%d", now)
        stem = f"{time.strftime('%H%M%S', now)}-{job.params.seed}"
        path, n = folder / f"{stem}.png", 2
        while path.exists() or path in taken:
            path, n = folder / f"{stem}-{n}.png", n + 1
        taken.add(path)
        return path

    def _on_model_ready(self, info: ModelInfo) -> None:
        if self._loading == info.choice:
            self._loading = None
        self.modelReady.emit(info)
        self.changed.emit()
        self._emit_idle_if_done()

    def _on_model_failed(self, source: str, message: str) -> None:
        if self._loading is not None and self._loading.source == source:
            self._loading = None
        # Queued jobs for a model that cannot load would only fail the same way.
        dropped = [job for job in self._pending if job.params.choice.source == source]
        for job in dropped:
            self._pending.remove(job)
        self.modelFailed.emit(source, message)
        self.changed.emit()
        self._emit_idle_if_done()

    def _on_lora_failed(self, path: str, message: str) -> None:
        # Queued jobs with a LoRA that cannot be applied would only fail the same way.
        if path:
            dropped = [job for job in self._pending if any(lora.path == path for lora in job.params.loras)]
            for job in dropped:
                self._pending.remove(job)
        self.loraFailed.emit(path, message)

    def _on_started(self, job_id: int) -> None:
        if self._running and job_id in self._run_ids:
            self.jobStarted.emit(self._running[0])

    def _end(self, job_id: int) -> Job | None:
        job = next((j for j in self._running if j.id == job_id), None)
        if job is not None:
            self._running.remove(job)
            self._cancelling.discard(job_id)
        return job

    def _on_finished(self, result: JobResult) -> None:
        if self._end(result.job.id) is not None:
            self.finished.emit(result)
        self._next()

    def _on_failed(self, job_id: int, message: str) -> None:
        if job_id not in self._run_ids:
            return
        # A failed run ends all its unfinished images, reported once (one cause, one message).
        job = self._end(job_id) or (self._running[0] if self._running else None)
        for other in list(self._running):
            self._end(other.id)
        if job is not None:
            self.failed.emit(job, message)
        self._next()

    def _on_cancelled(self, job_id: int) -> None:
        job = self._end(job_id)
        if job is not None:
            self.cancelled.emit(job)
        self._next()

    def _next(self) -> None:
        self.changed.emit()
        if not self._running:
            self._dispatch()
        self._emit_idle_if_done()

    def _emit_idle_if_done(self) -> None:
        if not self.is_busy():
            self.idle.emit()
