"""The SQLite history store: durable, searchable, newest first, deletes exactly one entry."""

from __future__ import annotations

import sqlite3

import pytest

from app.history import SCHEMA_VERSION, HistoryError, HistoryStore
from app.params import GenerationParams


def add(store: HistoryStore, prompt: str, seed: int, at: float, **kw):
    params = GenerationParams(prompt=prompt, model="/models/tiny", width=64, height=64, steps=4, seed=seed, **kw)
    return store.add(params, store.data_dir / "images" / f"{seed}.png", created_at=at, started_at=at - 1,
                     model_name="tiny", variant="schnell", thumbnail=b"\x89PNG...", metadata={"seed": seed})


@pytest.fixture
def store(tmp_path):
    s = HistoryStore(tmp_path / "history.sqlite3", tmp_path)
    yield s
    s.close()


def test_round_trip_keeps_every_setting(store, tmp_path):
    entry = add(store, "a lighthouse at dusk", 42, 1000.0, guidance=3.5, quantize=8)
    got = store.get(entry.id)
    assert got == entry
    assert got.params == GenerationParams("a lighthouse at dusk", "/models/tiny", 64, 64, 4, 3.5, 42, 8)
    assert got.image_path == tmp_path / "images" / "42.png"
    assert got.thumbnail == b"\x89PNG..." and got.metadata == {"seed": 42}
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
