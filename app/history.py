"""The prompt history: one SQLite database in the data dir, one row per finished image.

Durability matters more than speed here (a few rows a minute): the database runs in WAL
mode with synchronous=FULL and every entry is its own transaction, so killing the app
mid-generation loses at most the image being made. Image files live beside the database;
rows store their path relative to the data dir so the folder can be moved as a whole.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.params import GenerationParams

SCHEMA_VERSION = 1

_SCHEMA = [
    """
CREATE TABLE IF NOT EXISTS entries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  REAL    NOT NULL,   -- unix time the image was finished
    started_at  REAL,               -- unix time the generation began
    prompt      TEXT    NOT NULL,
    model       TEXT    NOT NULL,   -- what the engine loaded: local path or repo id
    model_name  TEXT,               -- the engine's display name for it
    variant     TEXT,               -- "schnell" | "dev"
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    steps       INTEGER NOT NULL,
    guidance    REAL,               -- NULL for models without guidance (schnell)
    seed        INTEGER NOT NULL,
    quantize    INTEGER,
    image_path  TEXT    NOT NULL,
    thumbnail   BLOB,               -- small PNG for the gallery
    metadata    TEXT    NOT NULL DEFAULT '{}'  -- the engine's metadata, as written into the PNG
)""",
    "CREATE INDEX IF NOT EXISTS entries_newest ON entries (created_at DESC, id DESC)",
]


_LIST_COLUMNS = ("id, created_at, started_at, prompt, model, model_name, variant, width, height, steps,"
                 " guidance, seed, quantize, image_path, metadata")


class HistoryError(Exception):
    """The history could not be read or written; str() is a one-line message for the window."""


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    created_at: float
    params: GenerationParams  # with the steps, guidance and seed actually used
    image_path: Path
    model_name: str = ""
    variant: str | None = None
    started_at: float | None = None
    thumbnail: bytes | None = field(default=None, repr=False, compare=False)  # only from get()
    metadata: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def prompt(self) -> str:
        return self.params.prompt

    @property
    def seed(self) -> int:
        return self.params.seed or 0

    @property
    def duration(self) -> float | None:
        return None if self.started_at is None else self.created_at - self.started_at


class HistoryStore:
    """All history reads and writes. Use from one thread (the GUI's)."""

    def __init__(self, path: Path | str, data_dir: Path | None = None) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        self.data_dir = data_dir or (self.path.parent if self.path else Path.cwd())
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None)  # explicit transactions
            self._db.row_factory = sqlite3.Row
            if self.path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"Could not open the history database {path}: {exc}") from exc

    @classmethod
    def in_memory(cls, data_dir: Path) -> HistoryStore:
        """A throw-away store, so the app stays usable when the real one cannot be opened."""
        return cls(":memory:", data_dir)

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            # Written by a newer app: reading might work, writing could corrupt its data.
            raise sqlite3.DatabaseError(f"it was written by a newer version (schema {version})")
        if version < SCHEMA_VERSION:
            with self._transaction():
                for statement in _SCHEMA:
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _transaction(self):
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()

    # -- writes ---------------------------------------------------------------------------
    def add(
        self,
        params: GenerationParams,
        image_path: Path,
        *,
        model_name: str = "",
        variant: str | None = None,
        started_at: float | None = None,
        created_at: float | None = None,
        thumbnail: bytes | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> HistoryEntry:
        """Record one finished image; committed to disk before returning."""
        created_at = time.time() if created_at is None else created_at
        metadata = metadata or {}
        row = (
            created_at, started_at, params.prompt, params.model, model_name, variant,
            params.width, params.height, params.steps or 0, params.guidance, params.seed or 0,
            params.quantize, self._stored_path(image_path), thumbnail, json.dumps(metadata),
        )
        try:
            with self._transaction():
                cursor = self._db.execute(
                    "INSERT INTO entries (created_at, started_at, prompt, model, model_name, variant,"
                    " width, height, steps, guidance, seed, quantize, image_path, thumbnail, metadata)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
        except sqlite3.Error as exc:
            raise HistoryError(f"Could not save to history: {exc}") from exc
        entry = self.get(cursor.lastrowid)
        assert entry is not None
        return entry

    def delete(self, entry_id: int) -> None:
        """Remove exactly one row (the caller decides what happens to its image file)."""
        try:
            with self._transaction():
                self._db.execute("DELETE FROM entries WHERE id = ?", (entry_id,))
        except sqlite3.Error as exc:
            raise HistoryError(f"Could not delete from history: {exc}") from exc

    # -- reads ----------------------------------------------------------------------------
    def get(self, entry_id: int) -> HistoryEntry | None:
        row = self._db.execute("SELECT * FROM entries WHERE id = ?", (entry_id,)).fetchone()
        return self._entry(row) if row else None

    def thumbnail(self, entry_id: int) -> bytes | None:
        row = self._db.execute("SELECT thumbnail FROM entries WHERE id = ?", (entry_id,)).fetchone()
        return row[0] if row else None

    def search(self, text: str = "", limit: int | None = None) -> list[HistoryEntry]:
        """Entries whose prompt contains every word of `text` (or whose seed is a word), newest first.

        Thumbnails are left out (fetch them with `thumbnail()` as rows are shown), so a long
        history lists quickly and without holding every thumbnail in memory.
        """
        clauses, args = [], []
        for word in text.split():
            escaped = word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            clause = "prompt LIKE ? ESCAPE '\\'"
            args.append(f"%{escaped}%")
            if word.isdigit():
                clause = f"({clause} OR seed = ?)"
                args.append(int(word))
            clauses.append(clause)
        sql = f"SELECT {_LIST_COLUMNS} FROM entries"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY created_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        try:
            return [self._entry(row) for row in self._db.execute(sql, args)]
        except sqlite3.Error as exc:
            raise HistoryError(f"Could not read the history: {exc}") from exc

    def __len__(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    # -- helpers --------------------------------------------------------------------------
    def _stored_path(self, path: Path) -> str:
        path = Path(path)
        try:
            return path.resolve().relative_to(self.data_dir.resolve()).as_posix()
        except ValueError:
            return str(path)

    def _entry(self, row: sqlite3.Row) -> HistoryEntry:
        image_path = Path(row["image_path"])
        if not image_path.is_absolute():
            image_path = self.data_dir / image_path
        try:
            metadata = json.loads(row["metadata"] or "{}")
        except ValueError:
            metadata = {}
        params = GenerationParams(
            prompt=row["prompt"], model=row["model"], width=row["width"], height=row["height"],
            steps=row["steps"], guidance=row["guidance"], seed=row["seed"], quantize=row["quantize"],
        )
        return HistoryEntry(
            id=row["id"], created_at=row["created_at"], params=params, image_path=image_path,
            model_name=row["model_name"] or "", variant=row["variant"], started_at=row["started_at"],
            thumbnail=row["thumbnail"] if "thumbnail" in row.keys() else None, metadata=metadata,
        )


class _Transaction:
    """BEGIN/COMMIT around a block, ROLLBACK if it raises (the connection is in autocommit mode)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        elif self._db.in_transaction:  # SQLite may already have rolled back (e.g. disk full)
            self._db.execute("ROLLBACK")
