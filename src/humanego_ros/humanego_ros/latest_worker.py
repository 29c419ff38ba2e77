"""A worker thread that always processes the newest item: for nodes whose callback is slower than its input.

A subscription callback that does the slow work itself makes DDS queue messages behind it, and each one is
processed later than the last (a chunk retargeted seconds after its observation is useless). Instead the
callback hands the message over with :meth:`LatestWorker.submit`: the worker processes the newest one, and an
older one still waiting is replaced (the caller counts those).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestWorker(Generic[T]):
    """Runs ``handle(item)`` on its own thread for the newest submitted item.

    ``on_error(exc)`` is called with an exception ``handle`` raised; the worker then stops (a node usually
    logs and shuts down: failing silently would leave the robot without commands).
    """

    def __init__(self, handle: Callable[[T], None], on_error: Callable[[BaseException], None], name: str):
        self._handle = handle
        self._on_error = on_error
        self._slot = threading.Condition()
        self._item: T | None = None
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, item: T) -> bool:
        """Hand ``item`` over; True when it replaced an older item that was still waiting."""
        with self._slot:
            replaced = self._item is not None
            self._item = item
            self._slot.notify()
        return replaced

    def stop(self, timeout_s: float = 10.0) -> None:
        with self._slot:
            self._stopping = True
            self._slot.notify()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=timeout_s)

    def _run(self) -> None:
        while True:
            with self._slot:
                while self._item is None and not self._stopping:
                    self._slot.wait()
                if self._stopping:
                    return
                item, self._item = self._item, None
            try:
                self._handle(item)
            except BaseException as exc:  # noqa: BLE001 - handed to the owner, which decides
                self._on_error(exc)
                return
