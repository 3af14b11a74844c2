"""Model downloads on background threads (never the MLX worker's), reported through Qt signals.

The engine (mlx_flux.downloads) does the transfer; this object starts one thread per
repository, turns its callbacks into queued signals (rate-limited: a 33 GB download reports
every few kilobytes), and keeps the hub's file listings it has seen. Signals emitted from a
plain Python thread reach slots of objects on the GUI thread queued, so the widgets only ever
see plain data.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from mlx_flux.downloads import Download, DownloadError, Listing, Progress, Stopped, list_repo, remove_partial

log = logging.getLogger(__name__)

REPORT_EVERY = 0.1  # seconds between two progress signals of one download


class DownloadController(QObject):
    listed = Signal(str, object)  # repo, Listing (the files and their sizes)
    listFailed = Signal(str, str, str)  # repo, kind, message
    progress = Signal(str, object)  # repo, mlx_flux.downloads.Progress
    finished = Signal(str, str)  # repo, its snapshot folder
    stopped = Signal(str, str)  # repo, "paused" | "cancelled" (a cancel has removed its partial files)
    failed = Signal(str, str, str)  # repo, kind ("offline", "gated", "disk", ...), one-line message
    tokenChecked = Signal(bool, str)  # accepted?, the account's name or why not

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.listings: dict[str, Listing] = {}
        self._jobs: dict[str, Download] = {}
        self._threads: list[threading.Thread] = []
        self._written: dict[str, list[Path]] = {}  # files this session's downloads completed, per repo
        self._lock = threading.Lock()

    # -- asked from the GUI thread ------------------------------------------------------------
    def is_running(self, repo: str) -> bool:
        with self._lock:
            return repo in self._jobs

    def list(self, repo: str) -> None:
        """Ask the hub for `repo`'s files and sizes (listed / listFailed)."""
        self._spawn(self._list, repo)

    def start(self, repo: str, token: str | None = None) -> None:
        """Download (or resume) `repo` into the Hugging Face cache."""
        with self._lock:
            if repo in self._jobs:
                return
            self._jobs[repo] = Download(self.listings.get(repo) or _PENDING, token)  # reserved
        self._spawn(self._download, repo)

    def pause(self, repo: str) -> None:
        with self._lock:
            job = self._jobs.get(repo)
        if job is not None:
            job.pause()

    def cancel(self, repo: str) -> None:
        """Stop `repo`'s download and remove its partial files (also when it is paused)."""
        with self._lock:
            job = self._jobs.get(repo)
        if job is not None:
            job.cancel()  # the thread removes the files once it has stopped writing
        else:
            self._remove(repo)
            self.stopped.emit(repo, "cancelled")

    def verify_token(self, token: str) -> None:
        """Check a pasted access token with the hub and store it as huggingface_hub does."""
        self._spawn(self._verify, token)

    def shutdown(self, timeout: float = 2.0) -> None:
        """Pause every download (the partial files stay for next time) and wait for the threads."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.pause()
        end = time.monotonic() + timeout
        for thread in list(self._threads):
            thread.join(max(0.0, end - time.monotonic()))

    # -- on the download threads --------------------------------------------------------------
    def _emit(self, signal: str, *args) -> None:
        try:
            getattr(self, signal).emit(*args)
        except RuntimeError:  # the window was closed and its objects deleted: nobody to tell
            pass

    def _spawn(self, target, *args) -> None:
        self._threads = [t for t in self._threads if t.is_alive()]
        thread = threading.Thread(target=target, args=args, daemon=True, name=f"download-{args[0][:40]}")
        self._threads.append(thread)
        thread.start()

    def _list(self, repo: str) -> Listing | None:
        try:
            listing = list_repo(repo)
        except DownloadError as e:
            self._emit("listFailed", repo, e.kind, str(e))
            return None
        self.listings[repo] = listing
        self._emit("listed", repo, listing)
        return listing

    def _download(self, repo: str) -> None:
        with self._lock:
            job = self._jobs[repo]
        try:
            if job.listing is _PENDING:
                listing = list_repo(repo, token=job.token)
                self.listings[repo] = listing
                self._emit("listed", repo, listing)
                fresh = Download(listing, job.token)
                with self._lock:
                    self._jobs[repo] = fresh
                if job.stop_requested == "cancelled":  # asked while listing
                    fresh.cancel()
                elif job.stop_requested:
                    fresh.pause()
                job = fresh
            last = [0.0]

            def report(p: Progress) -> None:
                now = time.monotonic()
                if now - last[0] >= REPORT_EVERY or p.done >= p.total:
                    last[0] = now
                    self._emit("progress", repo, p)

            job.on_progress = report
            folder = job.run()
        except Stopped as s:
            self._written.setdefault(repo, []).extend(job.written)
            if s.reason == "cancelled":
                self._remove(repo)
            self._finish(repo)
            self._emit("stopped", repo, s.reason)
            return
        except DownloadError as e:
            self._written.setdefault(repo, []).extend(job.written)
            self._finish(repo)
            self._emit("failed", repo, e.kind, str(e))
            return
        except Exception as e:  # a bug: one line in the window, the traceback in the log
            log.exception("download of %s failed", repo)
            self._finish(repo)
            self._emit("failed", repo, "network", f"cannot download {repo}: {type(e).__name__}: {e}")
            return
        self._finish(repo)
        self._emit("finished", repo, str(folder))

    def _finish(self, repo: str) -> None:
        with self._lock:
            self._jobs.pop(repo, None)

    def _remove(self, repo: str) -> None:
        remove_partial(repo)
        for path in self._written.pop(repo, []):
            try:
                path.unlink(missing_ok=True)
            except OSError:
                log.warning("could not remove %s", path)

    def _verify(self, token: str) -> None:
        from huggingface_hub import HfApi, constants

        try:
            info = HfApi(endpoint=constants.ENDPOINT).whoami(token=token)
        except Exception as e:  # the token itself never goes into a message or the log
            status = getattr(getattr(e, "response", None), "status_code", None)
            why = ("the hub does not accept this token" if status in (401, 403)
                   else "cannot reach the Hugging Face hub to check the token")
            self._emit("tokenChecked", False, why)
            return
        try:
            save_token(token)
        except OSError as e:
            self._emit("tokenChecked", False, f"cannot save the token: {e.strerror or e}")
            return
        self._emit("tokenChecked", True, str(info.get("name") or "your account"))


def save_token(token: str) -> None:
    """Store `token` where huggingface_hub reads it (its token file under HF_HOME, owner-only)."""
    import os

    from huggingface_hub import constants

    path = Path(constants.HF_TOKEN_PATH)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token.strip())


_PENDING = Listing("", "", ())  # a download whose listing is still being fetched
