"""LatestWorker: the newest item is processed, waiting ones are replaced, errors reach the owner."""

import threading

from humanego_ros.latest_worker import LatestWorker


def test_newest_item_wins_while_busy():
    started, release, done = threading.Event(), threading.Event(), threading.Event()
    handled = []

    def handle(item):
        handled.append(item)
        if item == 0:
            started.set()
            release.wait(10)
        if item == 3:
            done.set()

    worker = LatestWorker(handle, on_error=lambda exc: None, name="test")
    assert worker.submit(0) is False
    assert started.wait(10)
    # The worker is busy with 0: 1 and 2 wait in turn and are replaced; 3 is the one processed next.
    assert worker.submit(1) is False
    assert worker.submit(2) is True
    assert worker.submit(3) is True
    release.set()
    assert done.wait(10)
    worker.stop()
    assert handled == [0, 3]


def test_error_is_handed_to_the_owner_and_stops_the_worker():
    errors = []
    got = threading.Event()

    def on_error(exc):
        errors.append(exc)
        got.set()

    def handle(item):
        raise RuntimeError(f"bad item {item}")

    worker = LatestWorker(handle, on_error=on_error, name="test")
    worker.submit(7)
    assert got.wait(10)
    assert str(errors[0]) == "bad item 7"
    worker.stop()
