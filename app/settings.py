"""Preferences that persist between launches, in an ini file inside the data dir.

Keeping them beside the history (instead of the platform registry/plist) means a test or a
second profile with its own --data-dir is fully isolated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

MAX_RECENT_MODELS = 8
MAX_KNOWN_LORAS = 64
PRECISIONS = ("auto", "full", "8", "4")  # the default-precision preference


class Settings:
    def __init__(self, path: Path) -> None:
        self._qs = QSettings(str(path), QSettings.Format.IniFormat)

    def sync(self) -> None:
        self._qs.sync()

    # QSettings' ini backend returns strings for everything; convert on the way out.
    def _get(self, key: str, default: Any, kind: type) -> Any:
        value = self._qs.value(key, None)
        if value is None or value == "":
            return default
        try:
            if kind is bool:
                return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
            return kind(value)
        except (TypeError, ValueError):
            return default

    def _set(self, key: str, value: Any) -> None:
        self._qs.setValue(key, value)

    def _strings(self, key: str) -> list[str]:
        """A stored list of strings, empty entries left out."""
        value = self._qs.value(key, [])
        if isinstance(value, str):  # a one-element list comes back as a plain string
            value = [value]
        return [str(v) for v in value or [] if v]

    # -- model ----------------------------------------------------------------------------
    @property
    def model(self) -> str:
        return self._get("model/last", "", str)

    @model.setter
    def model(self, value: str) -> None:
        self._set("model/last", value)
        recent = [value] + [m for m in self.recent_models if m != value]
        self._set("model/recent", recent[:MAX_RECENT_MODELS])

    @property
    def recent_models(self) -> list[str]:
        return self._strings("model/recent")

    # -- LoRAs --------------------------------------------------------------------------------
    @property
    def known_loras(self) -> list[str]:
        """LoRA files added from outside the library folder, newest first (restore looks there too)."""
        return self._strings("lora/known")

    def remember_lora(self, path: str) -> None:
        known = [path] + [p for p in self.known_loras if p != path]
        self._set("lora/known", known[:MAX_KNOWN_LORAS])

    @property
    def has_quantize(self) -> bool:
        """Whether a precision was ever saved (a first run has none)."""
        return self._qs.contains("model/quantize")

    @property
    def quantize(self) -> int | None:
        bits = self._get("model/quantize", 0, int)
        return bits if bits in (4, 8) else None

    @quantize.setter
    def quantize(self, bits: int | None) -> None:
        self._set("model/quantize", bits or 0)

    # -- generation -----------------------------------------------------------------------
    @property
    def size(self) -> tuple[int, int]:
        return self._get("generate/width", 1024, int), self._get("generate/height", 1024, int)

    @size.setter
    def size(self, value: tuple[int, int]) -> None:
        self._set("generate/width", int(value[0]))
        self._set("generate/height", int(value[1]))

    @property
    def prompt(self) -> str:
        """The prompt as it was typed when the app last closed."""
        return self._get("generate/prompt", "", str)

    @prompt.setter
    def prompt(self, value: str) -> None:
        self._set("generate/prompt", value)

    @property
    def image_count(self) -> int:
        return self._get("generate/count", 1, int)

    @image_count.setter
    def image_count(self, value: int) -> None:
        self._set("generate/count", int(value))

    # -- window ---------------------------------------------------------------------------
    def window_state(self, key: str) -> QByteArray | None:
        value = self._qs.value(f"window/{key}")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_window_state(self, key: str, value: QByteArray) -> None:
        self._set(f"window/{key}", value)

    @property
    def export_dir(self) -> str:
        return self._get("export/dir", "", str)

    @export_dir.setter
    def export_dir(self, value: str) -> None:
        self._set("export/dir", value)

    # -- preferences (the Preferences dialog) ----------------------------------------------
    @property
    def default_precision(self) -> str:
        """'auto' (by this machine's memory), 'full', '8' or '4': what a launch starts with."""
        value = self._get("preferences/precision", "auto", str)
        return value if value in PRECISIONS else "auto"

    @default_precision.setter
    def default_precision(self, value: str) -> None:
        self._set("preferences/precision", value if value in PRECISIONS else "auto")

    def startup_quantize(self) -> int | None:
        """The precision a launch starts with: the preference when it names one; on Automatic the
        last one used (the memory-based choice takes this place)."""
        chosen = self.default_precision
        if chosen == "auto":
            return self.quantize
        return None if chosen == "full" else int(chosen)

    @property
    def live_previews(self) -> bool:
        """Previews of the image while it is made (off: the step counter only, a little faster)."""
        return self._get("preferences/live_previews", True, bool)

    @live_previews.setter
    def live_previews(self, value: bool) -> None:
        self._set("preferences/live_previews", bool(value))

    @property
    def notify_finished(self) -> bool:
        """A notification and a Dock badge when an image finishes while the app is in the background."""
        return self._get("preferences/notify_finished", True, bool)

    @notify_finished.setter
    def notify_finished(self, value: bool) -> None:
        self._set("preferences/notify_finished", bool(value))

    def panel_visible(self, name: str) -> bool:
        """Whether the side panel `name` ('controls', 'history') is shown (View > Hide …)."""
        return self._get(f"window/{name}_visible", True, bool)

    def set_panel_visible(self, name: str, visible: bool) -> None:
        self._set(f"window/{name}_visible", bool(visible))
