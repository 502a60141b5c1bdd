"""Recipes of the zoo's variants: how ``ntre-zoo reproduce`` trains and evaluates each manifest entry.

A variant whose measured metrics record the command that trained it (``train_command``, as the shipped
``ntrenet_tiny.synthetic_fold0`` does) is replayed from that command: same options, same environment
(``OMP_NUM_THREADS=1``), same exported weights (``last``), evaluated on the recorded episodes and seed. Every
other variant (the 20 paper variants) gets the paper recipe: ``--preset paper`` (or ``reference``), the
authors' backbone initialisation (``--backbone-weights reference``), ``--precision auto`` (bf16 on GPUs that
compute it natively), and the protocol's evaluation. Every recipe names its ``--precision``, so that it means the
same whatever the default of ``train`` becomes.

Also here: the checks a sweep makes before its first step (data roots, backbone files, GPU groups) and the
measured numbers it records, in the manifest's form (percent, with episodes, seeds, protocol and command).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UnknownModelError
from ..evaluation.protocols import DEFAULT_PROTOCOL, get_protocol
from ..training.run_config import RunConfig
from ..zoo.manifest import Manifest, ManifestEntry
from .train_command import command_line, parse_train_command, run_config_from_options

__all__ = [
    "Recipe",
    "check_backbones",
    "check_data_root",
    "find_synthetic_root",
    "gpu_groups",
    "measured_metrics",
    "recipe_for",
    "select_variants",
]

_DEFAULT_SEEDS = 5
#: Where a recipe's run reads and writes until a sweep gives it its data root and run directory.
_UNSET = "."
_METRICS = ("miou", "fb_iou", "precision")


@dataclass(frozen=True)
class Recipe:
    """How one variant is trained and evaluated.

    Args:
        name: the manifest name.
        data_key: which data root it needs: the manifest's dataset (``pascal5i``, ``coco20i``, ``synthetic``).
        run: the training run, with its data root and run directory left to the sweep (:meth:`run_config`).
        env: environment variables of the training command (``OMP_NUM_THREADS=1`` for bit-exact CPU runs).
        weights: the export that becomes the variant's weights: ``last`` or ``best`` (selected on the test fold,
            as the authors' code does).
        shots: the shots it is evaluated with.
        episodes: evaluation episodes per seed.
        seed: the first episode seed.
        seeds: how many seeds (``seed``, ``seed + 1``, ...); the results are their mean and std.
        protocol: the evaluation protocol's name.
        synthetic: for the synthetic benchmark, the ``make-synthetic`` options the recorded command used.
        origin: ``recorded`` (replayed from the manifest) or ``paper`` (the paper recipe).
    """

    name: str
    data_key: str
    run: RunConfig
    env: tuple[tuple[str, str], ...] = ()
    weights: str = "last"
    shots: tuple[int, ...] = (1, 5)
    episodes: int = 1000
    seed: int = 321
    seeds: int = _DEFAULT_SEEDS
    protocol: str = DEFAULT_PROTOCOL
    synthetic: tuple[tuple[str, int], ...] = ()
    origin: str = "paper"

    @property
    def dataset(self) -> str:
        """The benchmark the loaders read (the synthetic set reads as ``pascal5i``)."""
        return self.run.data.dataset

    @property
    def fold(self) -> int:
        return self.run.data.fold

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the ledger keeps it, so a resumed sweep can refuse changed settings)."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "run"}
        return json.loads(json.dumps({**values, "run": self.run.to_dict()}))

    def run_config(self, data_root: str | Path, output: str | Path) -> RunConfig:
        """The training run reading ``data_root`` and writing ``output``."""
        return self.run.replace(**{"data.root": str(data_root), "output_dir": str(output)})

    def train_command(self, data_root: str | Path, output: str | Path) -> str:
        """The training as a user types it: environment, then ``ntre-zoo train`` with every option."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env)
        words = command_line(self.run_config(data_root, output))
        return f"{env} {words}" if env else str(words)


def select_variants(manifest: Manifest, patterns: Sequence[str]) -> list[str]:
    """Manifest names for ``patterns``: names, ``fnmatch`` patterns, or ``all`` (the variants with paper numbers).

    Raises:
        UnknownModelError: a name or pattern that matches nothing (with the closest names).
    """
    names: list[str] = []
    for pattern in patterns:
        if pattern == "all":
            found = [n for n, e in manifest.entries.items() if e.metrics["reference"]]
        elif any(c in pattern for c in "*?["):
            found = [n for n in manifest.entries if fnmatch.fnmatchcase(n, pattern)]
            if not found:
                raise UnknownModelError(f"No manifest name matches {pattern!r}; `ntre-zoo list` shows them all.")
        else:
            found = [manifest.get(pattern).name]
        names += [n for n in found if n not in names]
    return names


def _synthetic_options(words: Sequence[str]) -> dict[str, int]:
    """The options of a recorded ``make-synthetic`` (``--seed 0 --train 1000 --val 300``), without its output
    directory: ``-o OUT``, or ``OUT`` alone as commands recorded before 0.4 spell it."""
    options: dict[str, int] = {}
    it = iter(words)
    for word in it:
        if word in ("-o", "--output"):
            next(it, None)
        elif word.startswith("--"):
            options[word[2:]] = int(next(it))
    return options


def _recorded(entry: ManifestEntry, measured: Mapping[str, Any], seeds: int | None) -> Recipe:
    """Replay the recorded command: ``[ENV=V ...] ntre-zoo make-synthetic ... && [ENV=V] ntre-zoo train ...``,
    with a ``# weights: RUN/last/...`` comment naming the export."""
    text, _, comment = str(measured["train_command"]).partition("#")
    env: dict[str, str] = {}
    train: list[str] | None = None
    synthetic: dict[str, int] = {}
    for part in text.split("&&"):
        words = shlex.split(part)
        local = {}
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            key, _, value = words.pop(0).partition("=")
            local[key] = value
        if words[:2] == ["ntre-zoo", "make-synthetic"]:
            synthetic = _synthetic_options(words[2:])
        elif words[:2] == ["ntre-zoo", "train"]:
            train, env = words[2:], local
    if train is None:
        raise ValueError(f"{entry.name}: the recorded train_command holds no `ntre-zoo train` ({text.strip()!r}).")
    # Recorded before --backbone-weights existed, the default then was random; a command naming no precision is a
    # CPU run (its environment pins the CPU kernels), and the CPU trains in fp32 whatever the option says.
    try:
        options = {"backbone_weights": "none", "precision": "fp32", **parse_train_command(train)}
        run = run_config_from_options({**options, "data_root": _UNSET, "output": _UNSET})
    except (TypeError, ValueError) as error:
        raise ValueError(f"{entry.name}: the manifest's recorded train_command cannot be replayed: {error}") from None
    shots = tuple(sorted(int(m.group(1)) for k in measured if (m := re.fullmatch(r"miou_(\d+)shot", k))))
    recorded_seeds = measured.get("seeds")
    return Recipe(
        name=entry.name,
        data_key=entry.dataset,
        run=run,
        env=tuple(sorted(env.items())),
        weights="best" if "/best/" in comment else "last",
        shots=shots or (1, 5),
        episodes=int(measured["episodes"]),
        seed=int(measured["seed"]),
        seeds=seeds or (len(recorded_seeds) if isinstance(recorded_seeds, list) else 1),
        protocol=str(measured.get("protocol", DEFAULT_PROTOCOL)),
        synthetic=tuple(sorted(synthetic.items())),
        origin="recorded",
    )


def recipe_for(
    entry: ManifestEntry,
    *,
    preset: str | None = None,
    backbone_weights: str | None = None,
    select: str | None = None,
    seeds: int | None = None,
    protocol: str = DEFAULT_PROTOCOL,
) -> Recipe:
    """The recipe of ``entry``: its recorded command if it has one, else the paper recipe.

    Args:
        entry: the manifest entry.
        preset: ``paper`` (default) or ``reference`` for the paper recipe.
        backbone_weights: ``reference`` (default), ``timm``, a path, or ``none`` (refused for a paper variant).
        select: ``last`` (default) or ``best`` (the best validation on the test fold, as the authors do).
        seeds: evaluation seeds (default: 5, or the recorded number).
        protocol: the evaluation protocol.

    Raises:
        ValueError: an option that would change a recorded recipe, random backbone weights for a paper
            variant, or an unknown protocol.
    """
    measured = entry.metrics["measured"]
    if "train_command" in measured:
        given = {"--preset": preset, "--backbone-weights": backbone_weights, "--select": select}
        changed = [f"{k} {v}" for k, v in given.items() if v is not None]
        if changed:
            raise ValueError(
                f"{entry.name} is reproduced from its recorded command, which {', '.join(changed)} would change; "
                "drop them (they apply to the paper variants)."
            )
        return _recorded(entry, measured, seeds)
    backbone_weights = backbone_weights or "reference"
    if backbone_weights == "none":
        raise ValueError(
            f"--backbone-weights none would train {entry.name} from a random frozen backbone, which can only give a "
            "useless checkpoint under a paper name. Use reference (the authors' files), timm or a PATH."
        )
    select = select or "last"
    if select not in ("last", "best"):
        raise ValueError(f"select must be 'last' or 'best', got {select!r}.")
    named = get_protocol(protocol)
    options: dict[str, Any] = {"dataset": entry.dataset, "fold": entry.fold, "shot": entry.train_shot}
    options |= {"backbone": entry.backbone, "preset": preset or "paper", "backbone_weights": backbone_weights}
    options |= {"precision": "auto", "protocol": named.name, "data_root": _UNSET, "output": _UNSET}
    if select == "last":
        options["val_every"] = 0  # no selection on the test fold, so no validation to run
    return Recipe(
        name=entry.name,
        data_key=entry.dataset,
        run=run_config_from_options(options),
        weights=select,
        episodes=named.episodes(entry.dataset),
        seed=named.seeds[0],
        seeds=seeds or _DEFAULT_SEEDS,
        protocol=named.name,
    )


def find_synthetic_root(root: Path) -> Path | None:
    """The directory holding ``synthetic.json`` (``root`` itself or ``root/VOCdevkit/VOC2012``), if any."""
    for candidate in (root, root / "VOCdevkit" / "VOC2012"):
        if (candidate / "synthetic.json").is_file():
            return candidate
    return None


def check_data_root(recipe: Recipe, root: Path) -> Path:
    """The ``--data-root`` to pass for ``recipe``; for the synthetic benchmark, checked against the recorded
    ``make-synthetic`` options."""
    if not root.exists():
        raise FileNotFoundError(f"--data-root {str(root)!r} (for {recipe.name}) does not exist.")
    if recipe.data_key != "synthetic":
        return root
    found = find_synthetic_root(root)
    if found is None:
        raise FileNotFoundError(
            f"{recipe.name} trains on the synthetic benchmark, but {str(root)!r} holds no synthetic.json. Make it "
            f"with: ntre-zoo make-synthetic -o DIR {' '.join(f'--{k} {v}' for k, v in recipe.synthetic)}"
        )
    written = json.loads((found / "synthetic.json").read_text(encoding="utf-8"))
    wrong = [f"--{k} {v} (found {written.get(k)!r})" for k, v in recipe.synthetic if written.get(k) != v]
    if wrong:
        raise ValueError(
            f"{recipe.name} was trained on the synthetic benchmark made with {', '.join(wrong)}; {str(found)!r} was "
            "made otherwise, so it cannot reproduce the variant. Make the recorded one with ntre-zoo make-synthetic."
        )
    return found


def check_backbones(recipes: Sequence[Recipe]) -> None:
    """Resolve every backbone initialisation the sweep will need (files present, Hub reachable) before it starts."""
    from ..model.config import BackboneConfig
    from ..zoo.backbone_weights import resolve_backbone_weights

    seen = set()
    for recipe in recipes:
        spec, model = recipe.run.backbone_weights, recipe.run.model
        if spec is None or model is None or spec == "none" or (spec, model.backbone.name) in seen:
            continue
        seen.add((spec, model.backbone.name))
        resolve_backbone_weights(spec, BackboneConfig(model.backbone.name))


def gpu_groups(recipes: Sequence[Recipe], gpus: Sequence[int] | None, per_run: int) -> list[list[int] | None]:
    """The GPU groups, one run each at a time; refuses a GPU named twice and a split the presets' batches do not
    allow. ``gpus`` are indices as this process sees them (within its ``CUDA_VISIBLE_DEVICES``)."""
    if not gpus:
        if per_run != 1:
            raise ValueError("gpus_per_run needs gpus=.")
        return [None]
    repeated = sorted({g for g in gpus if list(gpus).count(g) > 1})
    if repeated:
        raise ValueError(
            f"--gpus {','.join(map(str, gpus))} names GPU {', '.join(map(str, repeated))} more than once. Each GPU "
            "trains one variant at a time (two trainings on one GPU would share its memory and run no faster); "
            f"pass each GPU once: --gpus {','.join(map(str, dict.fromkeys(gpus)))}."
        )
    if per_run < 1 or len(gpus) % per_run:
        raise ValueError(f"gpus_per_run={per_run} must divide the {len(gpus)} GPUs {list(gpus)}.")
    for recipe in recipes:
        batch = recipe.run.train.batch_size
        if batch % per_run:
            fits = [n for n in range(1, len(gpus) + 1) if batch % n == 0 and len(gpus) % n == 0]
            raise ValueError(
                f"{recipe.name} trains with batch {batch}, which {per_run} GPUs per run cannot split; use "
                f"--gpus-per-run {' or '.join(map(str, fits))}."
            )
    import torch

    missing = [g for g in gpus if not 0 <= g < torch.cuda.device_count()]
    if missing:
        raise ValueError(
            f"There is no CUDA device {', '.join(map(str, missing))} here ({torch.cuda.device_count()} visible); "
            "check --gpus and CUDA_VISIBLE_DEVICES, or leave --gpus out to run on the CPU."
        )
    return [list(gpus[i : i + per_run]) for i in range(0, len(gpus), per_run)]


def measured_metrics(recipe: Recipe, results: Mapping[int, Mapping[str, Any]], root: str) -> dict[str, Any]:
    """Percent numbers per shot (mean over seeds, and std when several), with how they were produced."""
    measured: dict[str, Any] = {}
    for shot, result in results.items():
        for key in _METRICS:
            measured[f"{key}_{shot}shot"] = round(100 * result[key], 2)
            if recipe.seeds > 1:
                measured[f"{key}_{shot}shot_std"] = round(100 * result[f"{key}_std"], 2)
    shots = ",".join(map(str, recipe.shots))
    command = (
        f"ntre-zoo evaluate {recipe.name} --dataset {recipe.dataset} --data-root {root} --fold {recipe.fold} "
        f"--shot {{{shots}}} --protocol {recipe.protocol} --episodes {recipe.episodes} --seed {recipe.seed}"
    )
    command += f" --seeds {recipe.seeds}" if recipe.seeds > 1 else ""
    seeds = [recipe.seed + i for i in range(recipe.seeds)]
    provenance = {"episodes": recipe.episodes, "seed": recipe.seed, "seeds": seeds, "protocol": recipe.protocol}
    return {**measured, **provenance, "command": command}
