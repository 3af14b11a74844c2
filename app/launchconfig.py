"""What has to be known before the data folder is opened: where the data folder is.

It lives outside the data folder (in the platform's config folder), in a small ini file, so
that Preferences > Data folder > Change… can point the next launch somewhere else; an explicit
--data-dir still wins."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSettings, QStandardPaths

from app import APP_NAME


def config_path() -> Path:
    location = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericConfigLocation)
    return Path(location or Path.home() / ".config") / APP_NAME / "launch.ini"


def _settings() -> QSettings:
    return QSettings(str(config_path()), QSettings.Format.IniFormat)


def chosen_data_dir() -> Path | None:
    """The data folder chosen in Preferences, if any."""
    value = _settings().value("data_dir", "")
    return Path(str(value)).expanduser() if value else None


def choose_data_dir(path: Path | None) -> None:
    """Use `path` from the next launch on (None: back to the default)."""
    qs = _settings()
    if path is None:
        qs.remove("data_dir")
    else:
        qs.setValue("data_dir", str(path))
    qs.sync()
