"""``iter_segment``: :func:`~ntre_zoo.inference.segment.segment` over a stream of queries of any length, in
bounded memory. A worker thread reads ahead (decodes each query and places it on the model's canvas) while the
model runs; results come back in input order, and a query that cannot be read comes back as its exception
instead of ending the stream.

Memory holds at most ``read_ahead`` prepared queries waiting plus one batch (each a ``(3, S, S)`` float canvas,
2.7 MB at the reference's 473 px), whatever the number of queries; the decoded image itself is dropped once
it is on the canvas.
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Generator, Iterable, Iterator, Mapping
from typing import Any, TypeVar

import torch

from ..model.config import check_int
from ..model.eval_view import eval_view
from ..model.types import FewShotSegmenter
from .image_io import MAX_PIXELS
from .predict import prepare_image
from .segment import Segmentation, _resolve, _segment_batch

__all__ = ["READ_ERRORS", "iter_segment", "prefetch"]

#: What reading a bad query raises (unreadable, truncated, not an image, over the pixel cap, a wrong
#: shape or type); :func:`iter_segment` yields these instead of raising them.
READ_ERRORS: tuple[type[Exception], ...] = (ValueError, TypeError, OSError)
_END = object()
_POLL_S = 0.1
_T = TypeVar("_T")


def iter_segment(
    model: FewShotSegmenter,
    queries: Iterable[Any],
    supports: Mapping[str, Any],
    *,
    threshold: float = 0.5,
    device: str | torch.device | None = None,
    precision: str = "auto",
    batch_size: int = 4,
    read_ahead: int = 8,
    mask_threshold: float | None = None,
    max_pixels: int | None = MAX_PIXELS,
) -> Generator[tuple[Any, Segmentation | Exception], None, None]:
    """Segment each query of ``queries`` (consumed lazily: a generator of paths works), reading ahead in a thread.

    The results equal ``segment(model, list(queries), supports, ...)``'s, query by query. Supports are encoded
    once, before the first query is read; pass ``encode_supports``'s output to share them between calls.

    Args:
        model: an :class:`~ntre_zoo.NTRENet`.
        queries: images in any form ``predict`` takes (paths, PIL images, arrays, tensors).
        supports: ``{name: (images, annotations)}`` or ``{name: SupportFeatures}``, as in ``segment``.
        threshold, device, precision, mask_threshold, max_pixels: as in ``segment``.
        batch_size: queries per forward pass (bad queries do not count).
        read_ahead: at most this many prepared queries wait for the model (at least 1).

    Yields:
        ``(query, result)`` in input order: ``result`` is a :class:`Segmentation`, or for a query that could
        not be read the exception (one of :data:`READ_ERRORS`, its message naming ``query[i]`` and the file).
        Raise it to stop at the first bad query.

    Raises:
        TypeError, ValueError: a bad option or support, before any query is read. Errors of the model itself
            (out of memory, say) and unexpected errors of the reader are raised, not yielded.
    """
    read_ahead = check_int(read_ahead, "read_ahead", 1)
    device, dtype, encoded, batch_size, max_pixels = _resolve(
        model, supports, threshold, device, precision, batch_size, mask_threshold, max_pixels
    )
    return _stream(model, queries, encoded, threshold, device, dtype, batch_size, read_ahead, max_pixels)


def _prepared(model: FewShotSegmenter, queries: Iterable[Any], max_pixels: int | None) -> Iterator[tuple[Any, Any]]:
    """``(query, canvas and size)`` for each query, or ``(query, error)`` for one that cannot be read."""
    for i, query in enumerate(queries):
        try:
            item: Any = prepare_image(model, query, f"query[{i}]", max_pixels)
        except READ_ERRORS as error:
            item = error
        yield query, item


def _stream(
    model: FewShotSegmenter,
    queries: Iterable[Any],
    encoded: Mapping[str, Any],
    threshold: float,
    device: torch.device,
    dtype: torch.dtype | None,
    batch_size: int,
    read_ahead: int,
    max_pixels: int | None,
) -> Generator[tuple[Any, Segmentation | Exception], None, None]:
    """The generator behind :func:`iter_segment` (a separate function so that the options are checked and the
    supports encoded when ``iter_segment`` is called, not at the first ``next``)."""
    view = eval_view(model)
    ahead = prefetch(_prepared(model, queries, max_pixels), read_ahead)
    pending: list[tuple[Any, Any]] = []  # in input order, bad queries among them
    try:
        for item in itertools.chain(ahead, [_END]):
            if isinstance(item, tuple):
                pending.append(item)
            good = [prepared for _, prepared in pending if not isinstance(prepared, Exception)]
            if len(good) < batch_size and item is not _END:
                continue
            results = iter(_segment_batch(view, good, encoded, threshold, device, dtype) if good else [])
            for query, prepared in pending:
                yield query, prepared if isinstance(prepared, Exception) else next(results)
            pending = []
    finally:
        ahead.close()


class _Failure:
    """An exception raised in a worker thread, carried to the thread that waits on it."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


def prefetch(items: Iterable[_T], depth: int) -> Generator[_T, None, None]:
    """``items`` pulled by a background thread at most ``depth`` ahead of the consumer (a bounded queue); its
    exceptions come out here. Closing the result stops the thread and closes ``items``."""
    ready: queue.Queue[Any] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                ready.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def fill() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as error:  # carried to the consumer, which raises it
            put(_Failure(error))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=fill, name="ntre-zoo-read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            item = ready.get()
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()
