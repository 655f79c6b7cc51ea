"""The generating thread: the next chunk of rows is made in Python while
PostgreSQL ingests the current one."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .steps import LoadedTable


class Producer:
    """The generating thread: every table's chunks, in order, through a short queue.

    Yields ``(table index, rows, data)``; ``data`` is None at the end of a
    table. A failure in the thread is raised in the consumer.
    """

    def __init__(self, tables: list[LoadedTable], n: int, chunk: int, seconds: list[float]):
        self.tables, self.n, self.chunk, self.seconds = tables, n, chunk, seconds
        self.chunks: queue.Queue = queue.Queue(maxsize=2)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, name="generate_data", daemon=True)

    def __enter__(self) -> Iterator:
        self.thread.start()
        return self._consume()

    def __exit__(self, *exc_info) -> None:
        self.stop.set()
        self.thread.join()

    def _produce(self) -> None:
        try:
            for index, table in enumerate(self.tables):
                for start in range(0, self.n, self.chunk):
                    if self.stop.is_set():
                        return
                    started = time.perf_counter()
                    stop = min(start + self.chunk, self.n)
                    data = table.rows(start, stop)
                    self.seconds[0] += time.perf_counter() - started
                    self._put((index, stop - start, data))
                self._put((index, 0, None))
        except BaseException as exc:  # handed to the loading thread, which raises it
            self._put((-1, 0, exc))

    def _put(self, item) -> None:
        while not self.stop.is_set():
            try:
                self.chunks.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _consume(self) -> Iterator:
        while True:
            kind, rows, data = self.chunks.get()
            if kind == -1:
                raise data
            yield kind, rows, data
