"""The generation queue, on the GUI side of the worker.

Pending jobs stay here (not in the worker's event queue) so the window can list them and
drop any of them instantly; the worker is handed one job at a time. Everything in this
module runs on the GUI thread.
"""

from __future__ import annotations

import random
import time
from collections import deque
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal
from PySide6.QtGui import QImage

from app.params import SEED_MAX, GenerationParams
from app.worker import Job, JobResult, ModelChoice, ModelInfo, Worker


class JobQueue(QObject):
    changed = Signal()  # the pending list or the running job changed
    loadProgress = Signal(str, float)  # forwarded from the worker
    modelReady = Signal(object)  # ModelInfo
    modelFailed = Signal(str, str)  # source, message
    jobStarted = Signal(object)  # Job
    progress = Signal(int, int, float)  # step, total, elapsed seconds
    preview = Signal(QImage)
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
        self._running: Job | None = None
        self._cancelling: set[int] = set()
        self._loading: ModelChoice | None = None
        self._next_id = 1

        self._thread = QThread()
        self._thread.setObjectName("flux-worker")
        self.worker = Worker()
        self.worker.moveToThread(self._thread)
        self._runRequested.connect(self.worker.run)
        self._loadRequested.connect(self.worker.load)
        self.worker.loadProgress.connect(self.loadProgress)
        self.worker.modelReady.connect(self._on_model_ready)
        self.worker.modelFailed.connect(self._on_model_failed)
        self.worker.jobStarted.connect(self._on_started)
        self.worker.progress.connect(self.progress)
        self.worker.preview.connect(self.preview)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        self._thread.start()

    # -- state ------------------------------------------------------------------------------
    @property
    def running(self) -> Job | None:
        return self._running

    @property
    def pending(self) -> list[Job]:
        return list(self._pending)

    @property
    def loading(self) -> ModelChoice | None:
        return self._loading

    def is_busy(self) -> bool:
        return self._running is not None or bool(self._pending) or self._loading is not None

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
            jobs.append(Job(id=self._next_id, params=params, output_path=Path()))
            self._next_id += 1
        self._pending.extend(jobs)
        self.changed.emit()
        self._dispatch()
        return jobs

    def load_model(self, choice: ModelChoice) -> None:
        """Load (or keep warm) `choice` now, after whatever the worker is doing."""
        self._loading = choice
        self.changed.emit()
        self._loadRequested.emit(choice)

    def cancel(self, job_id: int) -> None:
        """Drop a pending job, or stop the running one at its next step."""
        for job in list(self._pending):
            if job.id == job_id:
                self._pending.remove(job)
                self.changed.emit()
                self.cancelled.emit(job)
                self._emit_idle_if_done()
                return
        if self._running is not None and self._running.id == job_id:
            self._cancelling.add(job_id)
            self.worker.cancel(job_id)
            self.changed.emit()

    def cancel_all(self) -> None:
        dropped = list(self._pending)
        self._pending.clear()
        for job in dropped:
            self.cancelled.emit(job)
        if self._loading is not None:
            self.worker.cancel_load()
        if self._running is not None:
            self.cancel(self._running.id)
        self.changed.emit()
        self._emit_idle_if_done()

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
        if self._running is not None or not self._pending:
            return
        job = self._pending.popleft()
        job = Job(id=job.id, params=job.params, output_path=self._output_path(job))
        self._running = job
        self.changed.emit()
        self._runRequested.emit(job)

    def _output_path(self, job: Job) -> Path:
        """images/YYYY-MM-DD/HHMMSS-<seed>.png, never overwriting an earlier image."""
        now = time.localtime()
        folder = self.images_dir / time.strftime("%Y-%m-%d", now)
        stem = f"{time.strftime('%H%M%S', now)}-{job.params.seed}"
        path, n = folder / f"{stem}.png", 2
        while path.exists():
            path, n = folder / f"{stem}-{n}.png", n + 1
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
        dropped = [job for job in self._pending if job.params.model == source]
        for job in dropped:
            self._pending.remove(job)
        self.modelFailed.emit(source, message)
        self.changed.emit()
        self._emit_idle_if_done()

    def _on_started(self, job_id: int) -> None:
        if self._running is not None and self._running.id == job_id:
            self.jobStarted.emit(self._running)

    def _end(self, job_id: int) -> Job | None:
        job = self._running
        if job is None or job.id != job_id:
            return None
        self._running = None
        self._cancelling.discard(job_id)
        return job

    def _on_finished(self, result: JobResult) -> None:
        if self._end(result.job.id) is not None:
            self.finished.emit(result)
        self._next()

    def _on_failed(self, job_id: int, message: str) -> None:
        job = self._end(job_id)
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
        self._dispatch()
        self._emit_idle_if_done()

    def _emit_idle_if_done(self) -> None:
        if not self.is_busy():
            self.idle.emit()
