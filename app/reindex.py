"""Images on disk that the history does not know, added back at start.

An image is written before its history row (a quit, a crash or a full database can come in
between); it is still the person's image, so the next start lists it. Only the app's own files
count: `images/YYYY-MM-DD/HHMMSS-<seed>[-n].png` inside the data dir's images folder, holding
the settings mlx-flux writes. Anything else there is left alone.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from app.history import HistoryError, HistoryStore
from app.params import GenerationParams, ModelChoice

log = logging.getLogger(__name__)

_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_NAME = re.compile(r"\d{6}-\d+(-\d+)?\.png")


def own_images(images_dir: Path) -> list[Path]:
    """The app's PNGs in `images_dir` (no links, nothing that resolves outside it), oldest first."""
    try:
        root = images_dir.resolve()
        days = [d for d in images_dir.iterdir() if _DAY.fullmatch(d.name) and d.is_dir() and not d.is_symlink()]
    except OSError:
        return []
    found = []
    for day in sorted(days):
        try:
            files = sorted(day.iterdir())
        except OSError:
            continue
        for path in files:
            if _NAME.fullmatch(path.name) and not path.is_symlink() and path.is_file() \
                    and path.resolve().is_relative_to(root):
                found.append(path)
    return found


def _source(name: str, sources: dict[str, str]) -> str:
    """The loadable model behind a PNG's model name: as the history knows it, else a known hub
    model of that name, else the name itself."""
    from app.models import display_name, known_models

    if name in sources:
        return sources[name]
    return next((m for m in known_models() if display_name(m) == display_name(name)), name)


def reindex(history: HistoryStore, images_dir: Path) -> int:
    """Add an entry for each of the app's images that has none; returns how many were added."""
    from PIL import Image

    from app.imaging import thumbnail_png
    from mlx_flux.metadata import read_request

    if history.read_only:
        return 0
    try:
        known = history.image_paths()
        images = [path for path in own_images(images_dir) if path.resolve() not in known]
        # The model an entry loads: the PNG names it (display name); the history knows the source.
        sources = {} if not images else {e.model_name: e.choice.source for e in reversed(history.search())}
    except HistoryError:
        return 0
    added = 0
    for path in images:
        try:
            request = read_request(path)
            if request is None:
                continue  # not settings we wrote: not ours to list
            with Image.open(path) as image:
                thumbnail = thumbnail_png(image.convert("RGB"))
            created = path.stat().st_mtime
            choice = ModelChoice(_source(request.model or "", sources), request.quantize)
            history.add(GenerationParams(choice, request), path, created_at=created, thumbnail=thumbnail)
            added += 1
        except (OSError, ValueError, HistoryError):
            log.warning("could not add %s to the history", path, exc_info=True)
    if added:
        log.info("added %d image(s) missing from the history", added)
    return added
