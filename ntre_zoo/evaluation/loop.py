"""The evaluation loop: ``evaluate`` a model on a fold's episodes, once or over several seeds, optionally under
a named protocol (:mod:`ntre_zoo.evaluation.protocols`), always at the model's own canvas size."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset
from tqdm.auto import tqdm

from ..data.builder import DataConfig, build_dataset
from ..data.episodes import EpisodeDataset, collate_episodes
from ..data.preprocessing import logits_to_original
from ..inference.precision import autocast_dtype, precision_of_amp_dtype, resolve_precision
from ..model.config import check_int, resolve_device
from ..model.eval_view import eval_view
from ..model.types import FewShotSegmenter
from .feature_reuse import score_grouped
from .metrics import FewShotMeter, FoldResult, MultiSeedResult, episode_stats
from .protocols import Protocol, get_protocol

__all__ = ["evaluate", "evaluate_seeds", "for_model", "score_episodes", "tf32_record", "with_episodes"]


def tf32_record(device: Any) -> dict[str, bool] | None:
    """Whether float32 work on ``device`` may run as TF32 (10-bit mantissa), for the record of an evaluation.

    On CUDA, "fp32" convolutions use TF32 unless ``torch.backends.cudnn.allow_tf32`` is False (torch's default is
    True on Ampere and newer), while matmuls do not by default; an fp32 evaluation's numbers depend on both, so
    its result JSON records them. None off CUDA.
    """
    if device is None or torch.device(device).type != "cuda":
        return None
    return {
        "convolutions": bool(torch.backends.cudnn.allow_tf32),
        "matmul": bool(torch.backends.cuda.matmul.allow_tf32),
    }


def with_episodes(dataset: EpisodeDataset, episodes: int | None, seed: int | None) -> EpisodeDataset:
    """``dataset`` (an evaluation dataset, ``split='val'``) with another episode count and seed: a shallow
    copy, or ``dataset`` itself when neither is given.

    Raises:
        ValueError: a training dataset, or ``episodes < 1``.
    """
    split = getattr(dataset, "split", "val")  # any dataset following the episode contract may come here
    if split != "val":
        raise ValueError(f"Evaluation needs an evaluation dataset (split='val'), got split={split!r}.")
    if episodes is None and seed is None:
        return dataset
    out = copy.copy(dataset)
    if episodes is not None:
        if episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes!r}.")
        out.episodes = int(episodes)
    if seed is not None:
        out.seed = int(seed)
    return out


def for_model(dataset: EpisodeDataset, model: FewShotSegmenter) -> EpisodeDataset:
    """``dataset`` as ``model`` must be evaluated on it: a dataset without ``test_size`` takes the model's
    ``config.test_size``; a different canvas or normalisation is refused, never used silently. Another
    dataset class following the episode contract makes its own tensors and is returned as it is.

    Raises:
        ValueError: the dataset's ``test_size``, ``mean`` or ``std`` differ from ``model.config``'s.
    """
    if not isinstance(dataset, EpisodeDataset):
        return dataset
    config = model.config
    if dataset.test_size is None:
        dataset = copy.copy(dataset)
        dataset.test_size = int(config.test_size)
    if dataset.test_size != config.test_size:
        raise ValueError(
            f"The dataset puts images on a {dataset.test_size}-px canvas but the model works at "
            f"model.config.test_size={config.test_size}; a model scored at another canvas is not measured "
            "(a 129-px model scores about 2 mIoU at 473). Build the dataset with DataConfig(test_size=None) to "
            "take the model's, or load the model with from_pretrained(..., test_size=N) to evaluate it at N."
        )
    for name in ("mean", "std"):
        ours, theirs = tuple(getattr(dataset, name)), tuple(float(v) for v in getattr(config, name))
        if ours != theirs:
            raise ValueError(
                f"The dataset normalises with {name}={ours} but the model expects {theirs} (model.config.{name}); "
                f"build the dataset with DataConfig({name}=model.config.{name})."
            )
    return dataset


def _resolve(
    model: FewShotSegmenter, dataset: EpisodeDataset | DataConfig, protocol: Protocol | None, progress: bool
) -> EpisodeDataset:
    """The evaluation dataset: built from a ``DataConfig`` (under ``protocol`` when given), or checked against
    ``protocol``; then matched to the model's canvas."""
    if isinstance(dataset, DataConfig):
        config = protocol.data_config(dataset) if protocol is not None else dataset
        dataset = build_dataset(config, "val", progress=progress)
    elif protocol is not None:
        if not isinstance(dataset, EpisodeDataset):
            raise TypeError(
                f"protocol={protocol.name!r} needs an EpisodeDataset or a DataConfig, got {type(dataset).__name__}."
            )
        protocol.check_dataset(dataset)
    return for_model(dataset, model)


def score_episodes(
    model: torch.nn.Module | FewShotSegmenter,
    dataset: EpisodeDataset,
    indices: Iterable[int],
    meter: FewShotMeter,
    *,
    batch_size: int = 1,
    workers: int = 0,
    progress: bool = True,
    reuse_features: bool = True,
    cache_mb: float = 2048,
) -> None:
    """Score episodes ``indices`` of ``dataset`` into ``meter``, with the model on its device, under
    ``torch.inference_mode``. The episodes run on an eval-mode view of the model
    (:func:`~ntre_zoo.model.eval_view.eval_view`), so its ``train()``/``eval()`` mode is never changed.

    With ``reuse_features`` (and an :class:`EpisodeDataset`, whose episodes can be listed without loading
    them) the episodes are grouped by query image and one-shot support encodings are cached
    (:mod:`ntre_zoo.evaluation.feature_reuse`); otherwise every episode runs on its own (the baseline path). Both
    give the same counts.
    """
    device = next(model.parameters()).device
    model = eval_view(model)
    if reuse_features and isinstance(dataset, EpisodeDataset):
        score_grouped(
            model,
            dataset,
            indices,
            meter,
            batch_size=batch_size,
            workers=workers,
            device=device,
            progress=progress,
            cache_bytes=int(cache_mb * 2**20),
        )
        return
    resize = getattr(dataset, "resize", "long_side")  # any dataset following the episode contract may come here
    subset = Subset(dataset, list(indices))
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=collate_episodes)
    for batch in tqdm(loader, desc="evaluate", disable=not progress, unit="batch"):
        logits = model(
            batch["query_image"].to(device), batch["support_images"].to(device), batch["support_masks"].to(device)
        ).logits.float()
        for b, label in enumerate(batch["query_label"]):
            h, w = label.shape
            prediction = logits_to_original(logits[b : b + 1], h, w, resize).argmax(dim=1)[0]
            meter.update(int(batch["class_id"][b]), episode_stats(prediction, label.to(device, non_blocking=True)))


def evaluate(
    model: FewShotSegmenter,
    dataset: EpisodeDataset | DataConfig,
    *,
    protocol: str | Protocol | None = None,
    episodes: int | None = None,
    batch_size: int = 1,
    workers: int = 0,
    device: Any = "cpu",
    seed: int | None = None,
    progress: bool = True,
    reuse_features: bool = True,
    cache_mb: float = 2048,
    precision: str = "fp32",
    amp_dtype: torch.dtype | None = None,
) -> FoldResult:
    """Run ``model`` on the episodes of ``dataset`` and score them (spec section 8).

    Images go onto the model's own canvas (``model.config.test_size``): a dataset built without
    ``test_size`` (the ``DataConfig`` default) takes it, and a dataset built for another canvas is refused.
    The numbers do not depend on ``batch_size``, ``workers`` or ``reuse_features``: episodes are a
    function of the seed and their index, and every episode is scored on its own label.

    Args:
        model: an NTRENet.
        dataset: an evaluation :class:`~ntre_zoo.data.EpisodeDataset` (``split='val'``), or a
            :class:`~ntre_zoo.data.DataConfig` to build it from (with the protocol's lists and preprocessing).
        protocol: ``ntrenet``, ``pfenet``, ``hsnet``, ``bam`` or a :class:`Protocol`: its episode count and
            first seed become the defaults, and a dataset built with other lists or preprocessing is
            refused. None: the dataset's own settings.
        episodes: number of episodes (default: the protocol's, else the dataset's).
        batch_size: episodes per forward pass.
        workers: DataLoader worker processes.
        device: where to run the model.
        seed: the episode seed (default: the protocol's first, else the dataset's).
        progress: show a progress bar.
        reuse_features: encode each query image once per evaluation and each (support image, class) pair
            once while ``cache_mb`` allows (the fast path); False runs every episode from scratch.
        cache_mb: memory budget of the support cache.
        precision: ``fp32`` (the default: every protocol's numbers, and the manifest's, are fp32), ``bf16`` or
            ``fp16`` (autocast), or ``auto`` (bf16 where the device computes it natively and the model gains; see
            :mod:`ntre_zoo.inference.precision`).
        amp_dtype: deprecated (it goes in the next release; a ``DeprecationWarning`` says so): the older spelling
            of ``precision`` (``torch.bfloat16`` = ``"bf16"``).

    Returns:
        :class:`FoldResult`, with the protocol's name.

    Raises:
        ValueError: bad settings, a dataset for another canvas or normalisation, or one not built for
            ``protocol``.
    """
    batch_size, workers = check_int(batch_size, "batch_size", 1), check_int(workers, "workers", 0)
    precision = precision_of_amp_dtype(precision, amp_dtype, default="fp32", function="evaluate")
    device = resolve_device(device) or torch.device("cpu")
    dtype = autocast_dtype(precision, device, model=model)
    named = get_protocol(protocol) if protocol is not None else None
    dataset = _resolve(model, dataset, named, progress)
    if named is not None:
        episodes = named.episodes(dataset.source.benchmark) if episodes is None else episodes
        seed = named.seeds[0] if seed is None else seed
    dataset = with_episodes(dataset, episodes, seed)
    meter = FewShotMeter(dataset.classes, {c: dataset.class_name(c) for c in dataset.classes})
    model.to(device)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
        score_episodes(
            model,
            dataset,
            range(len(dataset)),
            meter,
            batch_size=batch_size,
            workers=workers,
            progress=progress,
            reuse_features=reuse_features,
            cache_mb=cache_mb,
        )
    return meter.result(seed=dataset.seed, protocol=named.name if named is not None else None)


def evaluate_seeds(
    model: FewShotSegmenter,
    dataset: EpisodeDataset | DataConfig,
    seeds: Sequence[int] | None = None,
    *,
    protocol: str | Protocol | None = None,
    **kwargs: Any,
) -> MultiSeedResult:
    """:func:`evaluate` once per seed (same other settings); returns their mean and spread.

    Args:
        model, dataset, protocol: as :func:`evaluate` (a ``DataConfig`` is built once).
        seeds: the seeds (default: the protocol's seeds, e.g. BAM's five).
        **kwargs: other :func:`evaluate` arguments (``precision`` is resolved once, for every seed).
    """
    precision = precision_of_amp_dtype(
        kwargs.pop("precision", "fp32"), kwargs.pop("amp_dtype", None), default="fp32", function="evaluate_seeds"
    )
    device = resolve_device(kwargs.get("device", "cpu")) or torch.device("cpu")
    kwargs["precision"] = resolve_precision(precision, device, model)
    named = get_protocol(protocol) if protocol is not None else None
    if seeds is None:
        if named is None:
            raise ValueError("Pass seeds, or a protocol whose seeds to use.")
        seeds = named.seeds
    if not seeds:
        raise ValueError("Pass at least one seed.")
    dataset = _resolve(model, dataset, named, kwargs.get("progress", True))
    return MultiSeedResult([evaluate(model, dataset, seed=int(s), protocol=named, **kwargs) for s in seeds])
