"""The SQLite history store: durable, searchable, newest first, deletes exactly one entry."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from app.history import SCHEMA_VERSION, HistoryError, HistoryStore
from app.params import GenerationParams, ModelChoice
from mlx_flux.request import GenerationRequest


def add(store: HistoryStore, prompt: str, seed: int, at: float, guidance=None, quantize=None):
    request = GenerationRequest(prompt, 64, 64, steps=4, guidance=guidance, seed=seed, model="tiny", quantize=quantize)
    params = GenerationParams(ModelChoice("/models/tiny", quantize), request)
    return store.add(params, store.data_dir / "images" / f"{seed}.png", created_at=at, started_at=at - 1,
                     variant="schnell", thumbnail=b"\x89PNG...")


@pytest.fixture
def store(tmp_path):
    s = HistoryStore(tmp_path / "history.sqlite3", tmp_path)
    yield s
    s.close()


def test_round_trip_keeps_every_setting(store, tmp_path):
    entry = add(store, "a lighthouse at dusk", 42, 1000.0, guidance=3.5, quantize=8)
    got = store.get(entry.id)
    assert got == entry
    assert got.params == GenerationParams(ModelChoice("/models/tiny", 8), GenerationRequest(
        "a lighthouse at dusk", 64, 64, steps=4, guidance=3.5, seed=42, model="tiny", quantize=8))
    assert got.image_path == tmp_path / "images" / "42.png"
    assert got.thumbnail == b"\x89PNG..." and got.model_name == "tiny"
    assert got.duration == pytest.approx(1.0) and got.variant == "schnell"


def test_paths_inside_the_data_dir_are_stored_relative(store, tmp_path):
    add(store, "x", 1, 1.0)
    raw = sqlite3.connect(tmp_path / "history.sqlite3").execute("SELECT image_path FROM entries").fetchone()[0]
    assert raw == "images/1.png"


def test_newest_first_and_search(store):
    add(store, "a red fox in snow", 1, 100.0)
    add(store, "a blue whale", 2, 300.0)
    add(store, "red sunset over the sea", 3, 200.0)
    assert [e.seed for e in store.search()] == [2, 3, 1]
    assert [e.seed for e in store.search("red")] == [3, 1]
    assert [e.seed for e in store.search("RED fox")] == [1]  # every word, any case
    assert [e.seed for e in store.search("2")] == [2]  # a number also matches the seed
    assert store.search("zebra") == []
    assert len(store) == 3


def test_search_treats_wildcards_literally(store):
    add(store, "100% cotton", 1, 1.0)
    add(store, "cotton candy", 2, 2.0)
    add(store, "snake_case", 3, 3.0)
    assert [e.seed for e in store.search("100%")] == [1]
    assert [e.seed for e in store.search("e_c")] == [3]


def test_delete_removes_only_that_entry(store):
    a, b, c = (add(store, p, i, float(i)) for i, p in enumerate(["one", "two", "three"], 1))
    store.delete(b.id)
    assert [e.id for e in store.search()] == [c.id, a.id]
    assert store.get(a.id) == a and store.get(c.id) == c


def test_entries_survive_reopening_and_a_killed_process(tmp_path):
    first = HistoryStore(tmp_path / "h.sqlite3", tmp_path)
    entry = add(first, "persisted", 5, 1.0)
    # No close(): like a crash. Every add() has committed already.
    second = HistoryStore(tmp_path / "h.sqlite3", tmp_path)
    assert second.get(entry.id) == entry
    mode = second._db.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
    first.close()
    second.close()


def test_schema_version_is_recorded_and_newer_databases_are_refused(tmp_path):
    HistoryStore(tmp_path / "h.sqlite3", tmp_path).close()
    db = sqlite3.connect(tmp_path / "h.sqlite3")
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(HistoryError, match="newer version"):
        HistoryStore(tmp_path / "h.sqlite3", tmp_path)


def test_a_corrupt_database_is_a_clear_error(tmp_path):
    (tmp_path / "h.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(HistoryError, match="Could not open the history"):
        HistoryStore(tmp_path / "h.sqlite3", tmp_path)


def test_in_memory_fallback_works(tmp_path):
    store = HistoryStore.in_memory(tmp_path)
    add(store, "temporary", 1, 1.0)
    assert [e.prompt for e in store.search("temp")] == ["temporary"]


def test_listing_leaves_thumbnails_for_later(store):
    entry = add(store, "thumb", 1, 1.0)
    listed, = store.search()
    assert listed.thumbnail is None and listed == entry  # thumbnails are not part of equality
    assert store.thumbnail(entry.id) == b"\x89PNG..."
    assert store.thumbnail(999) is None


# -- schema 1 (settings as columns and again as metadata JSON) -> 2 (the request once) --------
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  REAL    NOT NULL,
    started_at  REAL,
    prompt      TEXT    NOT NULL,
    model       TEXT    NOT NULL,
    model_name  TEXT,
    variant     TEXT,
    width       INTEGER NOT NULL,
    height      INTEGER NOT NULL,
    steps       INTEGER NOT NULL,
    guidance    REAL,
    seed        INTEGER NOT NULL,
    quantize    INTEGER,
    image_path  TEXT    NOT NULL,
    thumbnail   BLOB,
    metadata    TEXT    NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS entries_newest ON entries (created_at DESC, id DESC);
PRAGMA user_version=1;
"""

V1_ROWS = [  # as the version 1 app wrote them: a schnell image, an 8-bit dev image, a row with odd metadata
    (1, 1000.0, 999.0, "a red fox", "/models/schnell", "tiny-schnell", "schnell", 64, 48, 4, None, 7, None,
     "images/2026-01-01/1.png", b"\x89PNG1",
     '{"prompt": "a red fox", "seed": 7, "steps": 4, "guidance": null, "width": 64, "height": 48, '
     '"model": "tiny-schnell", "version": "0.1.0"}'),
    (2, 2000.0, 1990.0, "a blue whale", "black-forest-labs/FLUX.1-dev", "FLUX.1-dev", "dev", 96, 64, 20, 4.5,
     4000000000, 8, "/elsewhere/2.png", None,
     '{"prompt": "a blue whale", "seed": 4000000000, "steps": 20, "guidance": 4.5, "width": 96, "height": 64, '
     '"model": "FLUX.1-dev", "version": "0.1.0"}'),
    (3, 3000.0, None, "no metadata", "/models/schnell", None, None, 64, 64, 3, None, 5, None, "images/3.png",
     None, "not json"),
]


def write_v1(path) -> None:
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.executemany("INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", V1_ROWS)
    db.commit()
    db.close()


def test_a_version_1_database_is_migrated_and_every_entry_restores_its_settings(tmp_path):
    write_v1(tmp_path / "h.sqlite3")
    store = HistoryStore(tmp_path / "h.sqlite3", tmp_path)
    assert sqlite3.connect(tmp_path / "h.sqlite3").execute("PRAGMA user_version").fetchone()[0] == 2
    fox, whale, plain = (store.get(i) for i in (1, 2, 3))
    assert fox.params == GenerationParams(ModelChoice("/models/schnell"), GenerationRequest(
        "a red fox", 64, 48, steps=4, guidance=None, seed=7, model="tiny-schnell"))
    assert whale.params == GenerationParams(ModelChoice("black-forest-labs/FLUX.1-dev", 8), GenerationRequest(
        "a blue whale", 96, 64, steps=20, guidance=4.5, seed=4000000000, model="FLUX.1-dev", quantize=8))
    assert plain.params == GenerationParams(ModelChoice("/models/schnell"), GenerationRequest(
        "no metadata", 64, 64, steps=3, seed=5))
    assert fox.image_path == tmp_path / "images/2026-01-01/1.png" and whale.image_path == Path("/elsewhere/2.png")
    assert fox.thumbnail == b"\x89PNG1" and fox.duration == pytest.approx(1.0) and fox.variant == "schnell"
    assert fox.model_name == "tiny-schnell" and plain.model_name == ""
    # Search and order work on the migrated rows; new entries follow the old ones.
    assert [e.id for e in store.search()] == [3, 2, 1]
    assert [e.id for e in store.search("4000000000")] == [2]
    assert add(store, "after the migration", 9, 4000.0).id == 4
    store.close()
    # Reopening does not migrate again.
    again = HistoryStore(tmp_path / "h.sqlite3", tmp_path)
    assert again.get(2) == whale and len(again) == 4
    again.close()


def test_a_version_1_entry_restores_the_same_settings_in_the_controls(qtbot, tmp_path):
    from app.controls import ControlsPanel

    write_v1(tmp_path / "h.sqlite3")
    store = HistoryStore(tmp_path / "h.sqlite3", tmp_path)
    controls = ControlsPanel()
    qtbot.addWidget(controls)
    controls.add_model("black-forest-labs/FLUX.1-dev")
    controls.select_model("black-forest-labs/FLUX.1-dev")
    controls.set_quantize(8)
    controls.apply_variant("dev", reset_values=True)
    whale = store.get(2)
    controls.apply_request(whale.request)
    shown = controls.params()
    assert shown.choice == whale.choice
    # The spin box folds a seed above its range in, as it always has; the rest is exact.
    assert shown.request == whale.request.with_(seed=4000000000 % 2**31, model=None, quantize=None)
    store.close()


def test_a_newer_database_is_refused_and_left_untouched(tmp_path):
    write_v1(tmp_path / "h.sqlite3")
    db = sqlite3.connect(tmp_path / "h.sqlite3")
    db.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    before = (tmp_path / "h.sqlite3").read_bytes()
    with pytest.raises(HistoryError, match="newer version"):
        HistoryStore(tmp_path / "h.sqlite3", tmp_path)
    assert (tmp_path / "h.sqlite3").read_bytes() == before
