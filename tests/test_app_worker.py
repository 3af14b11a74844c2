"""The worker and its queue, driven with a stand-in pipeline so every path (cancel, failures,
model reuse) is exercised deterministically."""

from __future__ import annotations

import errno
import threading

import pytest
from PySide6.QtCore import Qt
from PIL import Image

import app.worker as worker_module
from app.jobs import JobQueue
from app.params import GenerationParams
from app.worker import ModelChoice
from mlx_flux.request import GenerationRequest
from test_app_support import TIMEOUT, FakePipeline, fake_loader


@pytest.fixture
def queue(qtbot, tmp_path):
    q = JobQueue(tmp_path / "images")
    yield q
    q.shutdown()


@pytest.fixture
def fake(monkeypatch):
    pipe = FakePipeline()
    loads: list = []
    monkeypatch.setattr(worker_module, "load_pipeline", fake_loader(pipe, loads))
    saved: list = []

    def save(image, path, metadata):
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
        saved.append(path)

    monkeypatch.setattr(worker_module, "save_image", save)
    pipe.loads, pipe.saved = loads, saved
    return pipe


def params(model: str = "fake", quantize: int | None = None, **kw) -> GenerationParams:
    base = dict(prompt="a red fox", width=64, height=48, steps=3, seed=7)
    base.update(kw)
    return GenerationParams(ModelChoice(model, quantize), GenerationRequest(**base))


def test_job_reports_progress_previews_and_result(qtbot, queue, fake, tmp_path):
    steps, previews = [], []
    queue.progress.connect(lambda s, t, e: steps.append((s, t)))
    queue.preview.connect(previews.append)
    with qtbot.waitSignal(queue.finished, timeout=TIMEOUT) as blocker:
        queue.submit([params()])
    result = blocker.args[0]
    assert steps == [(1, 3), (2, 3), (3, 3)]
    assert len(previews) == 3 and previews[0].width() == 8
    assert (result.image.width(), result.image.height()) == (64, 48)
    assert result.params.seed == 7 and result.params.steps == 3
    assert result.saved_path is not None and result.saved_path.is_file()
    assert result.saved_path.is_relative_to(tmp_path / "images")
    assert result.thumbnail.startswith(b"\x89PNG")
    assert result.model.variant == "schnell" and result.model.default_guidance is None
    qtbot.waitUntil(lambda: not queue.is_busy(), timeout=TIMEOUT)


def test_model_stays_warm_and_reloads_on_change(qtbot, queue, fake):
    with qtbot.waitSignal(queue.idle, timeout=TIMEOUT):
        queue.submit([params(seed=1), params(seed=2)])
    assert fake.loads == [ModelChoice("fake", None)]  # one load for two images
    with qtbot.waitSignal(queue.idle, timeout=TIMEOUT):
        queue.submit([params(quantize=8)])
    assert fake.loads == [ModelChoice("fake", None), ModelChoice("fake", 8)]


def test_random_seeds_are_chosen_at_submit_and_distinct(qtbot, queue, fake):
    jobs = queue.submit([params(seed=None) for _ in range(4)])
    seeds = [job.params.seed for job in jobs]
    assert all(isinstance(s, int) for s in seeds) and len(set(seeds)) == 4
    results = []
    queue.finished.connect(lambda r: results.append(r.params.seed))
    qtbot.waitUntil(lambda: len(results) == 4, timeout=TIMEOUT)
    assert results == seeds  # in queue order


def test_cancel_running_job_stops_between_steps(qtbot, queue, fake):
    gate = threading.Event()
    # Runs on the worker thread: hold the run inside step 1 until the test has cancelled.
    queue.worker.progress.connect(lambda *a: gate.wait(TIMEOUT / 1000), Qt.ConnectionType.DirectConnection)
    cancelled, finished = [], []
    queue.cancelled.connect(cancelled.append)
    queue.finished.connect(finished.append)
    with qtbot.waitSignal(queue.progress, timeout=TIMEOUT):  # step 1 is under way
        # A different prompt: not batched with the first, so it waits in the queue.
        job, pending = queue.submit([params(steps=10), params(steps=10, prompt="another")])
    queue.cancel_all()
    gate.set()
    qtbot.waitUntil(lambda: not queue.is_busy(), timeout=TIMEOUT)
    assert {j.id for j in cancelled} == {job.id, pending.id}
    assert finished == []
    assert len(fake.calls) == 1  # the pending one never ran
    assert queue.worker._cancelled_jobs == set()  # nothing left behind to cancel a later job
    # Ready for the next run.
    with qtbot.waitSignal(queue.finished, timeout=TIMEOUT):
        queue.submit([params()])


def test_cancel_one_pending_job_keeps_the_rest(qtbot, queue, fake):
    gate = threading.Event()
    queue.worker.progress.connect(lambda *a: gate.wait(TIMEOUT / 1000), Qt.ConnectionType.DirectConnection)
    done = []
    queue.finished.connect(lambda r: done.append(r.params.seed))
    # Different prompts: three runs, not one batch.
    jobs = queue.submit([params(seed=s, prompt=f"fox {s}") for s in (1, 2, 3)])
    queue.cancel(jobs[1].id)
    assert [j.params.seed for j in queue.pending] == [3]
    gate.set()
    qtbot.waitUntil(lambda: len(done) == 2, timeout=TIMEOUT)
    assert done == [1, 3]


@pytest.mark.parametrize("error, expected", [
    (RuntimeError("kaboom"), "kaboom"),
    (MemoryError(), "Out of memory"),
    (RuntimeError("[metal::malloc] Attempting to allocate 80000000000 bytes"), "Out of memory"),
])
def test_exception_in_generation_becomes_a_message(qtbot, queue, fake, error, expected):
    fake.fail_with = error
    with qtbot.waitSignal(queue.failed, timeout=TIMEOUT) as blocker:
        queue.submit([params()])
    assert expected in blocker.args[1]
    assert "\n" not in blocker.args[1]
    fake.fail_with = None
    with qtbot.waitSignal(queue.finished, timeout=TIMEOUT):  # the worker is still alive
        queue.submit([params()])


def test_load_failure_drops_queued_jobs_for_that_model(qtbot, queue, monkeypatch):
    from mlx_flux.errors import ModelNotFoundError

    def broken(choice, progress):
        raise ModelNotFoundError(f"No model at {choice.source}")

    monkeypatch.setattr(worker_module, "load_pipeline", broken)
    failures = []
    queue.failed.connect(lambda job, msg: failures.append(msg))
    with qtbot.waitSignal(queue.modelFailed, timeout=TIMEOUT) as blocker:
        queue.submit([params(model="/nowhere"), params(model="/nowhere")])
    assert blocker.args == ["/nowhere", "No model at /nowhere"]
    qtbot.waitUntil(lambda: not queue.is_busy(), timeout=TIMEOUT)
    assert failures == ["No model at /nowhere"]  # reported once, not once per queued image


def test_unwritable_output_still_delivers_the_image(qtbot, queue, fake, monkeypatch):
    def disk_full(image, path, metadata):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(worker_module, "save_image", disk_full)
    with qtbot.waitSignal(queue.finished, timeout=TIMEOUT) as blocker:
        queue.submit([params()])
    result = blocker.args[0]
    assert result.saved_path is None and "disk is full" in result.save_error
    assert not result.image.isNull()


def test_standalone_load_reports_model_info(qtbot, queue, fake):
    fake.variant, fake.model_name = "dev", "fake-dev"
    with qtbot.waitSignal(queue.modelReady, timeout=TIMEOUT) as blocker:
        queue.load_model(ModelChoice("fake"))
    info = blocker.args[0]
    assert (info.variant, info.default_steps, info.default_guidance, info.name) == ("dev", 28, 3.5, "fake-dev")
    qtbot.waitUntil(lambda: queue.loading is None, timeout=TIMEOUT)


def test_pil_qimage_round_trip():
    from app.imaging import pil_to_qimage, qimage_to_pil

    image = Image.new("RGB", (5, 3), (10, 200, 30))
    image.putpixel((4, 2), (1, 2, 3))
    back = qimage_to_pil(pil_to_qimage(image))
    assert back.size == (5, 3) and back.tobytes() == image.tobytes()


# -- batches ---------------------------------------------------------------------------------
def test_seeds_of_one_request_run_as_a_batch_in_chunks(qtbot, queue, fake):
    fake.max_batch = 2  # the engine says two images of this size fit in one transformer pass
    steps, results = [], []
    queue.progress.connect(lambda s, t, e: steps.append((s, t)))
    queue.finished.connect(results.append)
    jobs = queue.submit([params(seed=s) for s in (5, 6, 7, 8)])
    assert [j.id for j in queue.running_jobs] == [j.id for j in jobs]  # one run, four queue items
    qtbot.waitUntil(lambda: not queue.is_busy(), timeout=TIMEOUT)
    assert fake.calls == []  # never one image at a time
    assert [c["seeds"] for c in fake.batch_calls] == [[5, 6], [7, 8]]
    assert all(c["max_batch"] == 2 for c in fake.batch_calls)
    assert steps == [(s, 6) for s in range(1, 7)]  # counted over both chunks
    assert [r.params.seed for r in results] == [5, 6, 7, 8]
    paths = [r.saved_path for r in results]
    assert len(set(paths)) == 4 and all(p.is_file() for p in paths)
    assert [r.job.id for r in results] == [j.id for j in jobs]


def test_each_step_of_a_batch_says_which_images_it_makes(qtbot, queue, fake):
    fake.max_batch = 2
    heard = []
    queue.batchProgress.connect(lambda *images: heard.append(("images", *images)))
    queue.progress.connect(lambda s, t, e: heard.append(("step", s, t)))
    queue.submit([params(seed=s) for s in (5, 6, 7)])
    qtbot.waitUntil(lambda: not queue.is_busy(), timeout=TIMEOUT)
    # Images 1-2 together, then image 3 alone; each just before the step it belongs to.
    expected = []
    for chunk, (first, last) in enumerate([(1, 2), (3, 3)]):
        for step in (1, 2, 3):
            expected += [("images", first, last, 3, step, 3), ("step", chunk * 3 + step, 6)]
    assert heard == expected

    heard.clear()
    with qtbot.waitSignal(queue.finished, timeout=TIMEOUT):
        queue.submit([params()])
    assert heard == [("step", 1, 3), ("step", 2, 3), ("step", 3, 3)]  # one image: no image numbers


def test_image_numbers_stay_put_when_an_image_leaves_a_batch(qtbot, queue, fake):
    fake.max_batch = 2
    gate = threading.Event()
    queue.worker.progress.connect(lambda *a: gate.wait(TIMEOUT / 1000), Qt.ConnectionType.DirectConnection)
    heard = []
    queue.batchProgress.connect(lambda first, last, count, step, steps: heard.append((first, last, count)))
    with qtbot.waitSignal(queue.progress, timeout=TIMEOUT):
        jobs = queue.submit([params(seed=s) for s in (1, 2, 3, 4)])
    queue.cancel(jobs[2].id)  # the third image, not started yet
    gate.set()
    qtbot.waitUntil(lambda: not queue.is_busy(), timeout=TIMEOUT)
    assert heard == [(1, 2, 4)] * 3 + [(4, 4, 4)] * 3


def test_same_seed_twice_gets_two_files(qtbot, queue, fake):
    results = []
    queue.finished.connect(results.append)
    queue.submit([params(seed=3), params(seed=3)])
    qtbot.waitUntil(lambda: len(results) == 2, timeout=TIMEOUT)
    assert results[0].saved_path != results[1].saved_path
    assert all(r.saved_path.is_file() for r in results)


def test_removing_one_image_of_a_running_batch(qtbot, queue, fake):
    fake.max_batch = 2
    gate = threading.Event()
    queue.worker.progress.connect(lambda *a: gate.wait(TIMEOUT / 1000), Qt.ConnectionType.DirectConnection)
    done, cancelled = [], []
    queue.finished.connect(lambda r: done.append(r.params.seed))
    queue.cancelled.connect(lambda j: cancelled.append(j.params.seed))
    with qtbot.waitSignal(queue.progress, timeout=TIMEOUT):
        jobs = queue.submit([params(seed=s) for s in (1, 2, 3, 4)])
    queue.cancel(jobs[1].id)  # in the chunk being made
    queue.cancel(jobs[3].id)  # in the chunk after it
    assert [j.params.seed for j in queue.running_jobs] == [1, 3]  # gone from the queue at once
    assert cancelled == [2, 4]
    gate.set()
    qtbot.waitUntil(lambda: not queue.is_busy(), timeout=TIMEOUT)
    assert done == [1, 3]
    assert [c["seeds"] for c in fake.batch_calls] == [[1, 2], [3]]  # seed 4 was never computed
    assert cancelled == [2, 4]  # reported once each
    assert len(fake.saved) == 2


def test_cancel_all_stops_a_batch_within_a_step(qtbot, queue, fake):
    fake.max_batch = 2
    gate = threading.Event()
    queue.worker.progress.connect(lambda *a: gate.wait(TIMEOUT / 1000), Qt.ConnectionType.DirectConnection)
    steps, done, cancelled = [], [], []
    queue.progress.connect(lambda s, t, e: steps.append(s))
    queue.finished.connect(done.append)
    queue.cancelled.connect(cancelled.append)
    with qtbot.waitSignal(queue.progress, timeout=TIMEOUT):
        jobs = queue.submit([params(seed=s, steps=10) for s in (1, 2, 3, 4)])
    with qtbot.waitSignal(queue.idle, timeout=TIMEOUT):
        queue.cancel_all()
        gate.set()
    assert steps == [1] and done == []
    assert sorted(j.id for j in cancelled) == sorted(j.id for j in jobs)
    assert len(fake.batch_calls) == 1 and fake.saved == []
    # Nothing left behind to cancel a later job (cleared as the worker's run returns).
    qtbot.waitUntil(lambda: queue.worker._cancelled_jobs == set(), timeout=TIMEOUT)
    with qtbot.waitSignal(queue.finished, timeout=TIMEOUT):  # ready for the next run
        queue.submit([params()])


def test_failing_batch_is_reported_once(qtbot, queue, fake):
    fake.fail_with = RuntimeError("kaboom")
    failures = []
    queue.failed.connect(lambda job, msg: failures.append(msg))
    queue.submit([params(seed=s) for s in (1, 2, 3)])
    qtbot.waitUntil(lambda: not queue.is_busy(), timeout=TIMEOUT)
    assert len(failures) == 1 and "kaboom" in failures[0]
    fake.fail_with = None
    with qtbot.waitSignal(queue.idle, timeout=TIMEOUT):
        queue.submit([params(seed=s) for s in (1, 2)])


# -- warm start ------------------------------------------------------------------------------
def test_load_warms_up_at_the_requested_size(qtbot, queue, fake):
    with qtbot.waitSignal(queue.modelReady, timeout=TIMEOUT):
        queue.load_model(ModelChoice("fake"), (96, 64))
    assert fake.warmups == [(96, 64)]
    with qtbot.waitSignal(queue.modelReady, timeout=TIMEOUT):  # already warm: not again
        queue.load_model(ModelChoice("fake"), (96, 64))
    assert fake.warmups == [(96, 64)]


def test_no_warm_up_ahead_of_a_waiting_job(qtbot, queue, fake, monkeypatch):
    loading, go = threading.Event(), threading.Event()

    def slow_load(choice, progress):
        loading.set()
        go.wait(TIMEOUT / 1000)
        return fake

    monkeypatch.setattr(worker_module, "load_pipeline", slow_load)
    queue.load_model(ModelChoice("fake"), (96, 64))
    assert loading.wait(TIMEOUT / 1000)
    with qtbot.waitSignal(queue.finished, timeout=TIMEOUT):
        queue.submit([params()])  # the person pressed Generate while the model loads
        go.set()
    assert fake.warmups == []  # the job itself is the warm-up
    assert len(fake.calls) == 1


def test_failed_warm_up_is_harmless(qtbot, queue, fake, monkeypatch):
    def broken(*a, **k):
        raise MemoryError()

    monkeypatch.setattr(fake, "warmup", broken, raising=False)
    with qtbot.waitSignal(queue.modelReady, timeout=TIMEOUT):
        queue.load_model(ModelChoice("fake"), (96, 64))
    with qtbot.waitSignal(queue.finished, timeout=TIMEOUT):
        queue.submit([params()])


def test_a_name_taken_meanwhile_gets_a_new_one_and_nothing_is_replaced(tmp_path):
    """Two apps on one data folder, same seed, same second: both images are kept."""
    first = worker_module.save_image(Image.new("RGB", (8, 8), (255, 0, 0)), tmp_path / "d" / "120000-7.png", {})
    second = worker_module.save_image(Image.new("RGB", (8, 8), (0, 0, 255)), tmp_path / "d" / "120000-7.png", {})
    assert (first.name, second.name) == ("120000-7.png", "120000-7-2.png")
    with Image.open(first) as a, Image.open(second) as b:
        assert a.getpixel((0, 0)) == (255, 0, 0) and b.getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize("count", [1, 3])
def test_a_run_cancelled_while_it_decodes_keeps_nothing(qtbot, queue, fake, count):
    fake.decode_gate = threading.Event()
    phases, finished, cancelled = [], [], []
    queue.phase.connect(phases.append)
    queue.finished.connect(finished.append)
    queue.cancelled.connect(cancelled.append)
    with qtbot.waitSignal(queue.phase, timeout=TIMEOUT):
        queue.submit([params(seed=s) for s in range(1, count + 1)])
    assert phases == ["decode"]
    with qtbot.waitSignal(queue.idle, timeout=TIMEOUT):
        queue.cancel_all()
        fake.decode_gate.set()
    assert finished == [] and fake.saved == [] and len(cancelled) == count


def test_a_finished_image_says_how_long_its_decode_took(qtbot, queue, fake):
    with qtbot.waitSignal(queue.finished, timeout=TIMEOUT) as blocker:
        queue.submit([params()])
    assert blocker.args[0].decode_seconds is not None and blocker.args[0].decode_seconds >= 0
    qtbot.waitUntil(lambda: not queue.is_busy(), timeout=TIMEOUT)
