"""Evaluation that does no backbone work twice: episodes are grouped by query image, so each query is
encoded once for all its episodes, and one-shot support encodings are cached per (image, class) pair.

In the standard protocol a val image recurs as query and as support many times (1000 episodes over a
few hundred images), and the backbone is most of an episode's cost. The per-episode counts, and so the
metrics, equal those of the plain per-episode loop (tested).
"""

from __future__ import annotations

import contextlib
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..data.preprocessing import logits_to_original
from ..model.types import SupportFeatures
from .metrics import episode_stats

__all__ = ["QueryGroups", "SupportCache", "score_grouped"]

Key = tuple[int, int]  # (source image index, class id)


class SupportCache:
    """LRU cache of one-shot support encodings, bounded in bytes.

    Only what inference needs is kept: the prototype and the masked layer4 features, the latter as their
    non-zero positions only (the masked-out positions are exact zeros and are restored as such).

    Args:
        max_bytes: memory budget; the least recently used entries are dropped beyond it (0 disables).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = int(max_bytes)
        self.bytes = 0
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Key, tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Size]] = OrderedDict()

    def get(self, key: Key) -> SupportFeatures | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
            return None
        self.hits += 1
        self._entries.move_to_end(key)
        prototype, positions, rows, shape = entry
        high = rows.new_zeros(shape[2], shape[3] * shape[4])
        high[:, positions] = rows.t()
        return SupportFeatures(None, None, prototype, high.view(shape))

    def put(self, key: Key, support: SupportFeatures) -> None:
        """Store a one-episode, one-shot encoding ``support`` (B = K = 1)."""
        high = support.masked_high
        flat = high.reshape(high.shape[2], -1)
        positions = flat.abs().sum(dim=0).nonzero().squeeze(1)
        entry = (support.prototype, positions, flat[:, positions].t().contiguous(), high.shape)
        size = sum(t.numel() * t.element_size() for t in entry[:3])
        if size > self.max_bytes:
            return
        self._entries[key] = entry
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, old = self._entries.popitem(last=False)
            self.bytes -= sum(t.numel() * t.element_size() for t in old[:3])


@dataclass(frozen=True)
class _Episode:
    index: int
    class_id: int
    supports: tuple[int, ...]


class QueryGroups(Dataset):
    """Episodes of an evaluation ``EpisodeDataset`` grouped by query image; item ``g`` loads that query
    once, plus every episode's supports and the label it is scored against.

    Args:
        dataset: an evaluation :class:`~ntre_zoo.data.EpisodeDataset`.
        indices: which of its episodes to score.
    """

    def __init__(self, dataset: Any, indices: Iterable[int]) -> None:
        self.dataset = dataset
        groups: dict[int, list[_Episode]] = defaultdict(list)
        for index in indices:
            query, class_id, supports = dataset.sample(index)
            groups[query].append(_Episode(index, class_id, tuple(supports)))
        self.groups = list(groups.items())

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, g: int) -> dict[str, Any]:
        query, episodes = self.groups[g]
        image = None
        items = []
        for episode in episodes:
            canvas, _, label = self.dataset.eval_view(query, episode.class_id)
            image = canvas if image is None else image
            supports = [(i, *self.dataset.eval_view(i, episode.class_id)[:2]) for i in episode.supports]
            items.append({"class_id": episode.class_id, "label": label, "supports": supports})
        return {"query_image": image, "episodes": items}


def _one(batch: Sequence[dict[str, Any]]) -> dict[str, Any]:
    return batch[0]


def score_grouped(
    model: Any,
    dataset: Any,
    indices: Iterable[int],
    meter: Any,
    *,
    batch_size: int,
    workers: int,
    device: torch.device,
    progress: bool,
    cache_bytes: int,
) -> SupportCache:
    """Score episodes ``indices`` of ``dataset`` into ``meter`` (model already in eval mode on ``device``).

    Returns:
        The support cache, for its hit statistics.
    """
    groups = QueryGroups(dataset, indices)
    loader = DataLoader(groups, batch_size=1, num_workers=workers, collate_fn=_one)
    cache = SupportCache(cache_bytes)
    bar = tqdm(total=sum(len(e) for _, e in groups.groups), desc="evaluate", unit="episode", disable=not progress)
    with _memory_format(model) as layout:
        for group in loader:
            _score_group(model, group, meter, cache, batch_size, device, layout, dataset.resize)
            bar.update(len(group["episodes"]))
    bar.close()
    return cache


@contextlib.contextmanager
def _memory_format(model: Any) -> Iterator[torch.memory_format]:
    """channels_last for the evaluation on the fast path, and the model's own layout restored afterwards
    (the same values, so training after a validation follows the same trajectory). Parameters are
    converted outside inference mode, or training could not use them afterwards."""
    if not model.fast_inference:
        yield torch.contiguous_format
        return
    probe = next(p for p in model.parameters() if p.dim() == 4 and p.shape[-1] > 1)
    was_channels_last = not probe.is_contiguous()
    with torch.inference_mode(False):
        model.to(memory_format=torch.channels_last)
    try:
        yield torch.channels_last
    finally:
        if not was_channels_last:
            with torch.inference_mode(False):
                model.to(memory_format=torch.contiguous_format)


def _score_group(
    model: Any,
    group: dict[str, Any],
    meter: Any,
    cache: SupportCache,
    batch_size: int,
    device: torch.device,
    layout: torch.memory_format,
    resize: str,
) -> None:
    """All episodes of one query image: the query encoded once, supports from the cache; logits are mapped to
    each label as the dataset's ``resize`` placed the image."""
    query = model.encode_query(group["query_image"][None].to(device).contiguous(memory_format=layout))
    episodes = group["episodes"]
    supports = [_encode_shots(model, episode, cache, device, layout) for episode in episodes]
    for start in range(0, len(episodes), batch_size):
        chunk = episodes[start : start + batch_size]
        logits = model.decode(query, SupportFeatures.cat(supports[start : start + batch_size])).logits.float()
        for b, episode in enumerate(chunk):
            h, w = episode["label"].shape
            prediction = logits_to_original(logits[b : b + 1], h, w, resize).argmax(dim=1)[0]
            meter.update(episode["class_id"], episode_stats(prediction, episode["label"].to(device, non_blocking=True)))


def _encode_shots(
    model: Any, episode: dict[str, Any], cache: SupportCache, device: torch.device, layout: torch.memory_format
) -> SupportFeatures:
    """The episode's K-shot encoding from cached (or freshly encoded) one-shot encodings."""
    shots = []
    for index, image, mask in episode["supports"]:
        key = (int(index), int(episode["class_id"]))
        support = cache.get(key)
        if support is None:
            images = image[None].to(device).contiguous(memory_format=layout)[None]
            encoded = model.encode_support(images, mask[None, None].to(device))
            support = SupportFeatures(None, None, encoded.prototype, encoded.masked_high)
            cache.put(key, support)
        shots.append(support)
    return SupportFeatures.combine_shots(shots)
