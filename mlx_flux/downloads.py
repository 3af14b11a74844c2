"""Fetching a model repository into the Hugging Face cache with byte progress, pause, cancel and resume.

    listing = list_repo("black-forest-labs/FLUX.1-schnell")      # what the engine needs, with sizes
    job = Download(listing, on_progress=print)
    folder = job.run()          # blocking: call it on a background thread; job.pause() / job.cancel()

`huggingface_hub.snapshot_download` reports no byte counts one can pause on, so each file is
transferred here, on top of its public helpers (`hf_hub_url`, `get_hf_file_metadata`, its HTTP
session and headers), in exactly its cache layout: `models--owner--name/blobs/<etag>` (written
as `<etag>.incomplete` first and resumed with a Range request, as huggingface_hub does),
`snapshots/<commit>/<path>` linking to the blob, and `refs/main` naming the commit. So
`hub.resolve` finds a finished download offline, and a paused one resumes after a restart,
from this module or from huggingface_hub itself.

Qt-free: the app wraps it in a thread and signals (app/modelmanager.py).
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from .errors import FluxError
from .hub import FULL_PATTERNS, _complete

RETRIES = 3  # a dropped connection is resumed this many times before the download fails
SPEED_WINDOW = 5.0  # seconds of transfer the speed is averaged over


class DownloadError(FluxError):
    """A download that cannot go on. `kind`: "offline", "gated", "not-found", "disk" or "network"."""

    def __init__(self, message: str, kind: str = "network") -> None:
        super().__init__(message)
        self.kind = kind


class Stopped(Exception):
    """The download was paused or cancelled (`reason`) on request; not an error."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RemoteFile:
    path: str  # inside the repository
    size: int | None


@dataclass(frozen=True)
class Listing:
    """The files of `repo_id` that the engine needs, at one commit."""

    repo_id: str
    commit: str
    files: tuple[RemoteFile, ...]
    gated: bool = False

    @property
    def total(self) -> int:
        return sum(f.size or 0 for f in self.files)


@dataclass(frozen=True)
class Progress:
    done: int  # bytes of the needed files on disk (a resumed download counts what it had)
    total: int
    speed: float  # bytes per second, averaged over the last few seconds; 0 while unknown
    file: str  # the file being transferred

    @property
    def eta(self) -> float | None:
        """Seconds left at the current speed; None while the speed is unknown."""
        return (self.total - self.done) / self.speed if self.speed > 0 else None


@dataclass(frozen=True)
class CacheState:
    state: str  # "complete" | "partial" | "missing"
    bytes: int  # on disk for this repository (blobs, the unfinished ones too)
    folder: Path | None  # the snapshot folder, once there is one


def matches(path: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) for p in patterns)


def cache_root() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def repo_folder(repo_id: str) -> Path:
    return cache_root() / ("models--" + repo_id.replace("/", "--"))


def list_repo(repo_id: str, patterns: Iterable[str] = FULL_PATTERNS, token: str | None = None,
              revision: str = "main") -> Listing:
    """The files the engine needs from `repo_id` with their sizes, from the hub's file listing."""
    from huggingface_hub import HfApi, constants

    patterns = list(patterns)
    try:
        info = HfApi(endpoint=constants.ENDPOINT).model_info(repo_id, revision=revision, files_metadata=True,
                                                             token=token or None)
    except Exception as e:
        raise _explain(e, repo_id) from e
    files = tuple(RemoteFile(s.rfilename, s.size) for s in info.siblings or [] if matches(s.rfilename, patterns))
    if not files:
        raise DownloadError(f"{repo_id} holds none of the files a FLUX.1 model needs", "not-found")
    return Listing(repo_id, info.sha or revision, files, gated=bool(info.gated))


def cache_state(repo_id: str, listing: Listing | None = None, patterns: Iterable[str] = FULL_PATTERNS) -> CacheState:
    """What the cache holds of `repo_id`: complete (every needed file: at the listing's commit
    and sizes, or in the snapshot `main` names, which is what `hub.resolve` uses offline),
    partial (some bytes) or missing. Reads the disk only."""
    root = repo_folder(repo_id)
    blobs = root / "blobs"
    size = sum(f.stat().st_size for f in blobs.iterdir() if f.is_file()) if blobs.is_dir() else 0
    if listing is not None:
        folder = _snapshot(root, listing.commit)
        if folder is not None and all(_have(folder / f.path, f.size) for f in listing.files):
            return CacheState("complete", size, folder)
    main = _snapshot(root, None)  # an older commit another tool fetched still works
    if main is not None and _complete(main, list(patterns)) and _shards_complete(main):
        return CacheState("complete", size, main)
    return CacheState("partial" if size else "missing", size, main)


def _snapshot(root: Path, commit: str | None) -> Path | None:
    if commit is None:
        ref = root / "refs" / "main"
        try:
            commit = ref.read_text().strip()
        except OSError:
            return None
    folder = root / "snapshots" / commit
    return folder if folder.is_dir() else None


def _shards_complete(folder: Path) -> bool:
    """Every shard the components' index files name is there (a paused download may lack some)."""
    import json

    for index in folder.glob("*/*.safetensors.index.json"):
        try:
            shards = set(json.loads(index.read_text()).get("weight_map", {}).values())
        except (OSError, ValueError, AttributeError):
            return False
        if not all((index.parent / s).is_file() for s in shards):
            return False
    return True


def _have(path: Path, size: int | None) -> bool:
    return path.is_file() and (size is None or path.stat().st_size == size)


def remove_partial(repo_id: str) -> int:
    """Delete the unfinished blobs of `repo_id` (what a cancelled download leaves); bytes freed."""
    freed = 0
    for f in (repo_folder(repo_id) / "blobs").glob("*.incomplete"):
        freed += f.stat().st_size
        f.unlink(missing_ok=True)
    return freed


class Download:
    """One repository's download. `run()` blocks (call it on a background thread); `pause()` and
    `cancel()` may be called from any thread and stop it within a chunk, raising `Stopped`."""

    def __init__(self, listing: Listing, token: str | None = None,
                 on_progress: Callable[[Progress], None] | None = None) -> None:
        self.listing = listing
        self.token = token
        self.on_progress = on_progress
        self._stop: str | None = None
        self._lock = threading.Lock()
        self._samples: list[tuple[float, int]] = []  # (time, bytes done) for the speed
        self._done = 0  # bytes of the needed files on disk
        self.written: list[Path] = []  # files this run completed (a cancel removes them)

    def pause(self) -> None:
        with self._lock:
            self._stop = self._stop or "paused"

    def cancel(self) -> None:
        with self._lock:
            self._stop = "cancelled"

    @property
    def stop_requested(self) -> str | None:
        """"paused" or "cancelled" once asked, else None."""
        with self._lock:
            return self._stop

    def _check(self) -> None:
        with self._lock:
            reason = self._stop
        if reason:
            raise Stopped(reason)

    def run(self) -> Path:
        """Fetch every missing file; the snapshot folder when all are there."""
        from huggingface_hub import constants

        listing = self.listing
        root = repo_folder(listing.repo_id)
        snapshot = root / "snapshots" / listing.commit
        if constants.HF_HUB_OFFLINE:
            raise DownloadError(f"cannot download {listing.repo_id}: HF_HUB_OFFLINE is set", "offline")
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "blobs").mkdir(parents=True, exist_ok=True)
        todo = [f for f in listing.files if not _have(snapshot / f.path, f.size)]
        self._done = sum(f.size or 0 for f in listing.files if f not in todo)
        self._done += self._partial_bytes(root)
        self._check_space(root, listing.total - self._done)
        self._report(todo[0].path if todo else "")
        for f in todo:
            self._check()
            self._fetch(root, snapshot, f)
        # Last: `main` names this commit only once its snapshot is whole, so a complete older
        # snapshot (another tool's) keeps working offline while this one is on its way.
        (root / "refs" / "main").write_text(listing.commit)
        self._report("")
        return snapshot

    @staticmethod
    def _partial_bytes(root: Path) -> int:
        return sum(p.stat().st_size for p in (root / "blobs").glob("*.incomplete"))

    def _check_space(self, root: Path, needed: int) -> None:
        free = shutil.disk_usage(root).free
        if needed > free:
            raise DownloadError(f"{self.listing.repo_id} needs {format_bytes(needed)} more but the disk holding "
                                f"the Hugging Face cache has {format_bytes(free)} free", "disk")

    def _fetch(self, root: Path, snapshot: Path, f: RemoteFile) -> None:
        from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url

        url = hf_hub_url(self.listing.repo_id, f.path, revision=self.listing.commit, endpoint=constants.ENDPOINT)
        try:
            meta = get_hf_file_metadata(url, token=self.token or None, endpoint=constants.ENDPOINT)
        except Exception as e:
            raise _explain(e, self.listing.repo_id) from e
        etag = meta.etag or f.path.replace("/", "_")
        blob = root / "blobs" / etag
        size = meta.size if meta.size is not None else f.size
        if not _have(blob, size):
            self._transfer(meta.location, blob, size, f.path)
            self.written.append(blob)
        link = snapshot / f.path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        try:
            os.symlink(os.path.relpath(blob, link.parent), link)
        except OSError:  # no symlinks on this file system: huggingface_hub moves the blob then
            shutil.move(str(blob), link)
        self.written.append(link)

    def _transfer(self, url: str, blob: Path, size: int | None, name: str) -> None:
        """GET `url` into `<blob>.incomplete`, resuming what is there with a Range request."""
        import httpx2
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        partial = blob.with_name(blob.name + ".incomplete")
        failures = 0
        while True:
            self._check()  # also between two attempts on a flaky network
            have = partial.stat().st_size if partial.exists() else 0
            if size is not None and have == size:
                break
            headers = build_hf_headers(token=self.token or None)
            headers["Accept-Encoding"] = "identity"
            if have:
                headers["Range"] = f"bytes={have}-"
            try:
                with get_session().stream("GET", url, headers=headers, follow_redirects=True,
                                          timeout=_timeout()) as response:
                    if response.status_code == 416:  # nothing left to send: start over
                        partial.unlink(missing_ok=True)
                        continue
                    hf_raise_for_status(response)
                    mode = "ab" if have and response.status_code == 206 else "wb"
                    if mode == "wb":
                        self._done -= have  # the server sends the whole file again
                    with open(partial, mode) as out:
                        for chunk in response.iter_bytes():
                            out.write(chunk)
                            self._done += len(chunk)
                            self._report(name)
                            self._check()
                break
            except Stopped:
                raise
            except OSError as e:
                if getattr(e, "errno", None) == 28:
                    raise DownloadError(f"cannot download {self.listing.repo_id}: the disk is full", "disk") from e
                raise DownloadError(f"cannot write {partial}: {e}") from e
            except (httpx2.TransportError, httpx2.StreamError) as e:
                self._check()
                failures += 1
                if failures > RETRIES:
                    raise _explain(e, self.listing.repo_id) from e
                time.sleep(min(2.0 ** failures, 10.0) * 0.1)
            except Exception as e:
                raise _explain(e, self.listing.repo_id) from e
        got = partial.stat().st_size
        if size is not None and got != size:
            raise DownloadError(f"{name}: the hub sent {got} bytes, {size} expected; press Retry")
        os.replace(partial, blob)

    def _report(self, name: str) -> None:
        now = time.monotonic()
        self._samples.append((now, self._done))
        while len(self._samples) > 2 and now - self._samples[0][0] > SPEED_WINDOW:
            self._samples.pop(0)
        t0, d0 = self._samples[0]
        speed = (self._done - d0) / (now - t0) if now - t0 > 0.2 else 0.0
        if self.on_progress is not None:
            self.on_progress(Progress(self._done, self.listing.total, max(speed, 0.0), name))


def _timeout() -> float:
    from huggingface_hub import constants

    return float(getattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 10) or 10)


def _explain(e: Exception, repo_id: str) -> DownloadError:
    """One line for a failed hub call, with a `kind` the app acts on."""
    import httpx2
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError)

    if isinstance(e, DownloadError):
        return e
    if isinstance(e, GatedRepoError):
        return DownloadError(f"{repo_id} needs you to accept its licence on Hugging Face and sign in", "gated")
    if isinstance(e, RepositoryNotFoundError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            return DownloadError(f"{repo_id} needs you to accept its licence on Hugging Face and sign in", "gated")
        return DownloadError(f"{repo_id}: no such repository on the Hugging Face hub", "not-found")
    if isinstance(e, HfHubHTTPError):
        status = getattr(getattr(e, "response", None), "status_code", None)
        if status in (401, 403):
            return DownloadError(f"{repo_id} needs you to accept its licence on Hugging Face and sign in", "gated")
        return DownloadError(f"cannot download {repo_id}: the hub answered {status or 'an error'}")
    if isinstance(e, OfflineModeIsEnabled):
        return DownloadError(f"cannot download {repo_id}: HF_HUB_OFFLINE is set", "offline")
    if isinstance(e, (httpx2.ConnectError, httpx2.TimeoutException)):
        return DownloadError(f"cannot reach the Hugging Face hub to download {repo_id} (no connection)", "offline")
    if isinstance(e, httpx2.TransportError):
        return DownloadError(f"the connection broke while downloading {repo_id}")
    first = str(e).splitlines()[0] if str(e) else ""
    return DownloadError(f"cannot download {repo_id}: {type(e).__name__}: {first}")


def format_bytes(n: float) -> str:
    """Decimal units, as macOS's Finder counts: 33.7 GB, 246 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{int(n)} bytes"


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
    if seconds >= 60:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds} s"
