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
from mlx_flux.request import GenerationRequest

from app.params import GenerationParams, ModelChoice

# 1: settings as columns, and again as the engine's metadata JSON.
# 2: the request once, as `GenerationRequest.to_metadata()` JSON (versioned by its own `schema`
#    field); columns only for what is searched, sorted or loaded (prompt, seed, time, model choice).
SCHEMA_VERSION = 2

_CREATE = [
    """
CREATE TABLE entries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  REAL    NOT NULL,   -- unix time the image was finished
    started_at  REAL,               -- unix time the generation began
    prompt      TEXT    NOT NULL,   -- the request's prompt, searched
    seed        INTEGER NOT NULL,   -- the request's seed, searched
    model       TEXT    NOT NULL,   -- the model choice: what the engine loaded (local path or repo id)
    quantize    INTEGER,            -- the model choice's precision (bits), NULL for full precision
    variant     TEXT,               -- "schnell" | "dev"
    image_path  TEXT    NOT NULL,
    thumbnail   BLOB,               -- small PNG for the gallery
    request     TEXT    NOT NULL    -- GenerationRequest.to_metadata(): exactly what made the image
)""",
    "CREATE INDEX entries_newest ON entries (created_at DESC, id DESC)",
]

_LIST_COLUMNS = "id, created_at, started_at, prompt, seed, model, quantize, variant, image_path, request"


class HistoryError(Exception):
    """The history could not be read or written; str() is a one-line message for the window."""


@dataclass(frozen=True)
class HistoryEntry:
    id: int
    created_at: float
    params: GenerationParams  # the model choice and the engine's resolved request
    image_path: Path
    variant: str | None = None
    started_at: float | None = None
    thumbnail: bytes | None = field(default=None, repr=False, compare=False)  # only from get()

    @property
    def request(self) -> GenerationRequest:
        return self.params.request

    @property
    def choice(self) -> ModelChoice:
        return self.params.choice

    @property
    def prompt(self) -> str:
        return self.request.prompt

    @property
    def seed(self) -> int:
        return self.request.seed or 0

    @property
    def model_name(self) -> str:
        """The engine's display name of the model (what the PNG says)."""
        return self.request.model or ""

    @property
    def duration(self) -> float | None:
        return None if self.started_at is None else self.created_at - self.started_at


class HistoryStore:
    """All history reads and writes. Use from one thread (the GUI's)."""

    def __init__(self, path: Path | str, data_dir: Path | None = None) -> None:
        self.path = Path(path) if str(path) != ":memory:" else None
        self.data_dir = data_dir or (self.path.parent if self.path else Path.cwd())
        self.read_only = False
        try:
            self._db = sqlite3.connect(str(path), isolation_level=None)  # explicit transactions
            self._db.row_factory = sqlite3.Row
            self._check_version()  # before anything writes to the file (WAL mode rewrites its header)
            if self.path is not None:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"Could not open the history database {path}: {exc}") from exc

    @classmethod
    def open_read_only(cls, path: Path, data_dir: Path) -> HistoryStore:
        """The existing history, for looking only (a read-only or full disk): nothing is written,
        not even SQLite's journal, and adding or deleting says why it cannot."""
        store = cls.__new__(cls)
        store.path, store.data_dir, store.read_only = Path(path), data_dir, True
        if not store.path.is_file():
            raise HistoryError(f"There is no history at {path} yet")
        last: Exception | None = None
        for options in ("mode=ro", "mode=ro&immutable=1"):  # a WAL database in a read-only folder needs the 2nd
            try:
                store._db = sqlite3.connect(f"file:{store.path.resolve()}?{options}", uri=True, isolation_level=None)
                store._db.row_factory = sqlite3.Row
                version = store._db.execute("PRAGMA user_version").fetchone()[0]
                if version != SCHEMA_VERSION:
                    raise HistoryError(f"The history at {path} needs an update this read-only session cannot make")
                store._db.execute("SELECT COUNT(*) FROM entries").fetchone()
                return store
            except sqlite3.DatabaseError as exc:
                last = exc
        raise HistoryError(f"Could not open the history database {path}: {last}")

    @classmethod
    def in_memory(cls, data_dir: Path) -> HistoryStore:
        """A throw-away store, so the app stays usable when the real one cannot be opened."""
        return cls(":memory:", data_dir)

    def _check_version(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            # Written by a newer app: reading might work, writing could corrupt its data.
            raise sqlite3.DatabaseError(f"it was written by a newer version (schema {version})")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version < SCHEMA_VERSION:
            with self._transaction():
                if version == 1:
                    self._db.execute("ALTER TABLE entries RENAME TO entries_v1")
                    self._db.execute("DROP INDEX IF EXISTS entries_newest")
                for statement in _CREATE:
                    self._db.execute(statement)
                if version == 1:
                    _migrate_v1(self._db)
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _transaction(self):
        if self.read_only:
            raise HistoryError("The history is open read-only in this session (its folder cannot be written)")
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()

    # -- writes ---------------------------------------------------------------------------
    def add(
        self,
        params: GenerationParams,
        image_path: Path,
        *,
        variant: str | None = None,
        started_at: float | None = None,
        created_at: float | None = None,
        thumbnail: bytes | None = None,
    ) -> HistoryEntry:
        """Record one finished image; committed to disk before returning."""
        created_at = time.time() if created_at is None else created_at
        request = params.request
        row = (
            created_at, started_at, request.prompt, request.seed or 0, params.choice.source,
            params.choice.quantize, variant, self._stored_path(image_path), thumbnail,
            json.dumps(request.to_metadata()),
        )
        try:
            with self._transaction():
                cursor = self._db.execute(
                    "INSERT INTO entries (created_at, started_at, prompt, seed, model, quantize, variant,"
                    " image_path, thumbnail, request) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

    def image_paths(self) -> set[Path]:
        """Every entry's image file, resolved (to tell which images on disk have no entry)."""
        try:
            rows = self._db.execute("SELECT image_path FROM entries").fetchall()
        except sqlite3.Error as exc:
            raise HistoryError(f"Could not read the history: {exc}") from exc
        paths = set()
        for (stored,) in rows:
            path = Path(stored)
            paths.add((path if path.is_absolute() else self.data_dir / path).resolve())
        return paths

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
        params = GenerationParams(ModelChoice(row["model"], row["quantize"]),
                                  _request(row["request"], row["prompt"], row["seed"]))
        return HistoryEntry(
            id=row["id"], created_at=row["created_at"], params=params, image_path=image_path,
            variant=row["variant"], started_at=row["started_at"],
            thumbnail=row["thumbnail"] if "thumbnail" in row.keys() else None,
        )


def _request(text: str | None, prompt: object, seed: object) -> GenerationRequest:
    """A row's request; one that cannot be read still restores its prompt and seed (whatever a
    damaged or hand-edited row holds in those columns: never anything but text and an integer)."""
    try:
        return GenerationRequest.from_metadata(json.loads(text or "{}"))
    except (ValueError, TypeError, RecursionError):  # not JSON, or no prompt in it
        if isinstance(prompt, bytes):
            prompt = prompt.decode("utf-8", "replace")
        ok_seed = isinstance(seed, int) and 0 <= seed < 2**64
        return GenerationRequest(str(prompt)[:10_000], seed=seed if ok_seed else None)


def _migrate_v1(db: sqlite3.Connection) -> None:
    """Schema 1 -> 2: each row's request from its columns (what was used), with the model's
    display name from its metadata; then the old table goes. Runs inside the caller's transaction."""
    rows = db.execute("SELECT * FROM entries_v1 ORDER BY id").fetchall()
    for row in rows:
        try:
            meta = json.loads(row["metadata"] or "{}")
        except ValueError:
            meta = {}
        meta = meta if isinstance(meta, dict) else {}
        request = GenerationRequest(
            prompt=row["prompt"], width=row["width"], height=row["height"],
            steps=row["steps"] or None,  # version 1 wrote 0 for "unknown"
            guidance=row["guidance"], seed=row["seed"],
            model=(meta.get("model") if isinstance(meta.get("model"), str) else None) or row["model_name"] or None,
            quantize=row["quantize"],
        )
        db.execute(
            "INSERT INTO entries (id, created_at, started_at, prompt, seed, model, quantize, variant, image_path,"
            " thumbnail, request) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row["id"], row["created_at"], row["started_at"], row["prompt"], row["seed"], row["model"],
             row["quantize"], row["variant"], row["image_path"], row["thumbnail"],
             json.dumps(request.to_metadata())),
        )
    db.execute("DROP TABLE entries_v1")


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
