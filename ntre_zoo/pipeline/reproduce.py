"""``reproduce``: train and evaluate zoo variants from their recipes into publishable directories, resumably.

For each variant (:mod:`ntre_zoo.pipeline.recipes` says how), in ``OUT``:

1. ``work/VARIANT/train/``: ``ntre-zoo train --config work/VARIANT/run.json``, the recipe's run as a file;
2. ``work/VARIANT/eval_{K}shot.json``: ``ntre-zoo evaluate`` of its weights for each shot, over the seeds;
3. ``VARIANT/``: a ``from_pretrained`` directory (``config.json``, ``model.safetensors``, a ``README.md`` with
   Hugging Face metadata, the measured and the paper's numbers, the exact commands) and ``manifest_entry.json``,
   which ``ntre-zoo publish`` takes to the Hub and into the manifest.

Every step is an ``ntre-zoo`` command run as a child process (``torchrun`` when a run gets several GPUs), so the
card records exactly what ran (:mod:`~ntre_zoo.pipeline.children`). ``OUT/ledger.json``
(:mod:`~ntre_zoo.pipeline.ledger`) records every step as it ends, so a sweep that was killed
(a crash, a preemption) goes on when the same command runs again: finished steps are skipped and an interrupted
training continues from its last checkpoint (``train --resume``). A lock on ``OUT/.lock``, which the children
inherit, keeps a second sweep (or a first sweep's orphaned child) from writing into the same ``OUT``.

GPUs: ``gpus=[0, 1, ...]`` with ``gpus_per_run=1`` trains one variant per GPU at a time, in parallel (the variants
are independent, and the preset batches need no splitting); ``gpus_per_run=K`` gives each run K GPUs under
``torchrun`` (for one large variant, or when the preset's batch needs it). Without GPUs, the variants run one
after the other on the CPU.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._atomic import atomic_write, atomic_write_json
from ..evaluation.protocols import DEFAULT_PROTOCOL
from ..training.run_dir import RunDir
from ..zoo.download import sha256_file
from ..zoo.manifest import ManifestEntry, load_manifest
from ..zoo.publish import ENTRY_FILE
from ..zoo.saving import CONFIG_NAME, WEIGHTS_METADATA, WEIGHTS_NAME, write_safetensors
from ..zoo.weights_diff import WeightsDiff, compare_weights
from .children import (
    EXIT_OUT_OF_MEMORY,
    Runner,
    Step,
    child_visible_devices,
    lock_sweep,
    out_of_memory_advice,
    run_subprocess,
)
from .ledger import LEDGER_NAME, Ledger
from .recipes import (
    Recipe,
    check_backbones,
    check_data_root,
    gpu_groups,
    measured_metrics,
    recipe_for,
    select_variants,
)
from .train_command import parse_train_command, run_config_from_options

__all__ = ["GPU_WORKERS", "VariantResult", "reproduce"]

#: DataLoader workers of a GPU step (the reference's 8); CPU steps load in the training process.
GPU_WORKERS = 8


@dataclass(frozen=True)
class VariantResult:
    """What ``reproduce`` made of one variant.

    Args:
        name: the variant.
        state: ``done`` or ``failed``.
        directory: ``OUT/VARIANT`` (complete when ``done``).
        measured: the measured metrics in percent, with episodes, seeds, protocol and commands.
        sha256: of ``model.safetensors``.
        manifest_check: for a variant the manifest already measured: ``{"sha256": bool, metric: (manifest, now)}``
            for every number both have.
        weights_diff: for a variant shipped in the package whose bytes this run did not regenerate: how its
            tensors differ from the shipped file's (on another kind of CPU, only running statistics may).
    """

    name: str
    state: str
    directory: Path
    measured: dict[str, Any]
    sha256: str | None = None
    manifest_check: dict[str, Any] | None = None
    weights_diff: WeightsDiff | None = None


class _Sweep:
    """Runs the steps of every variant, keeping the ledger, and writes each variant's directory."""

    def __init__(self, out: Path, runner: Runner, progress: bool, count: int) -> None:
        self.out, self.runner, self.progress, self.count = out, runner, progress, count
        self.ledger = Ledger(out / LEDGER_NAME)
        self.print_lock = threading.Lock()

    def say(self, index: int, name: str, text: str) -> None:
        with self.print_lock:
            print(f"[{index}/{self.count}] {name}: {text}", flush=True)

    def _run(self, step: Step, gpus: Sequence[int] | None) -> bool:
        started = time.time()
        code = self.runner(step, gpus)
        record: dict[str, Any] = {
            "command": step.command(),
            "returncode": code,
            "seconds": round(time.time() - started, 1),
        }
        if code == EXIT_OUT_OF_MEMORY:
            record["error"] = out_of_memory_advice(step, gpus)
        self.ledger.step_done(step.variant, step.name, {**record, "state": "done" if code == 0 else "failed"})
        return code == 0

    def _steps(self, recipe: Recipe, root: str, gpus: Sequence[int] | None) -> list[Step]:
        work = self.out / "work" / recipe.name
        run_dir, done = RunDir(work / "train"), self.ledger.variant(recipe.name)["steps"]
        quiet = () if self.progress else ("--no-progress",)
        nproc = len(gpus) if gpus else 1
        # On GPUs, episodes load in worker processes (8, as the reference); the workers do not change the episodes.
        workers = ("--workers", str(GPU_WORKERS)) if gpus else ()
        steps = []
        exported = run_dir.export(recipe.weights) / WEIGHTS_NAME
        if done.get("train", {}).get("state") != "done" or not exported.is_file():
            if run_dir.checkpoint("last").is_file():
                argv: tuple[str, ...] = ("train", "--resume", str(run_dir.path), *workers, *quiet)
            else:
                fresh = run_dir.path.is_dir() and any(run_dir.path.iterdir())
                config = ("train", "--config", str(work / RunDir.RUN_CONFIG))
                argv = (*config, *workers, *quiet, *(("--overwrite",) if fresh else ()))
            steps.append(Step(recipe.name, "train", argv, recipe.env, nproc))
        device, retrained = (("--device", "cuda") if gpus else ()), bool(steps)
        for shot in recipe.shots:
            target = work / f"eval_{shot}shot.json"
            if not retrained and done.get(f"eval_{shot}shot", {}).get("state") == "done" and target.is_file():
                continue  # evaluated, and the weights have not been trained again since
            argv = ("evaluate", str(run_dir.export(recipe.weights)), "--dataset", recipe.dataset, "--data-root", root)
            argv += ("--fold", str(recipe.fold), "--shot", str(shot), "--episodes", str(recipe.episodes))
            argv += ("--protocol", recipe.protocol, "--seed", str(recipe.seed), "--seeds", str(recipe.seeds))
            argv += ("--output", str(target), *device, *workers, *quiet)
            steps.append(Step(recipe.name, f"eval_{shot}shot", argv, recipe.env))
        return steps

    def variant(
        self, index: int, recipe: Recipe, entry: ManifestEntry, root: str, gpus: Sequence[int] | None
    ) -> VariantResult:
        """Run (or resume) one variant to its ``OUT/VARIANT`` directory."""
        record = self.ledger.variant(recipe.name)
        directory = self.out / recipe.name
        if record.get("state") == "done" and (directory / ENTRY_FILE).is_file():
            self.say(index, recipe.name, f"done earlier, skipped ({directory})")
            return self._result(recipe, entry, directory, "done")
        if not _same_recipe(record.get("recipe"), recipe) or record.get("data_root") not in (None, root):
            raise ValueError(
                f"{self.out} holds an unfinished {recipe.name} started with other settings (see {LEDGER_NAME}); "
                "run the same command as before, or use another -o."
            )
        work = self.out / "work" / recipe.name
        run = recipe.run_config(root, work / "train")
        train_command = record.get("train_command") or recipe.train_command(root, work / "train")
        work.mkdir(parents=True, exist_ok=True)
        run.save(work / RunDir.RUN_CONFIG, command=train_command)  # what the training child reads (--config)
        self.ledger.update(
            recipe.name, recipe=recipe.to_dict(), data_root=root, state="running", train_command=train_command
        )
        where = f"GPU {','.join(map(str, gpus))}" if gpus else "CPU"
        for step in self._steps(recipe, root, gpus):
            resumed = " (resuming from its last checkpoint)" if "--resume" in step.argv else ""
            self.say(index, recipe.name, f"{step.name} on {where}{resumed}")
            if not self._run(step, gpus):
                self.ledger.update(recipe.name, state="failed")
                error = self.ledger.variant(recipe.name)["steps"][step.name].get("error")
                self.say(index, recipe.name, f"FAILED at {step.name}: {error or step.command()}")
                return VariantResult(recipe.name, "failed", directory, {})
        self._write_directory(recipe, entry, root, directory)
        self.ledger.update(recipe.name, state="done")
        result = self._result(recipe, entry, directory, "done")
        shots = ", ".join(f"{k}-shot mIoU {result.measured[f'miou_{k}shot']}" for k in recipe.shots)
        self.say(index, recipe.name, f"done: {shots} -> {directory}")
        return result

    def _write_directory(self, recipe: Recipe, entry: ManifestEntry, root: str, directory: Path) -> None:
        from ..zoo.hub import load_pretrained_dir

        work = self.out / "work" / recipe.name
        source = RunDir(work / "train").export(recipe.weights)
        results = {k: json.loads((work / f"eval_{k}shot.json").read_text()) for k in recipe.shots}
        measured = measured_metrics(recipe, results, root)
        measured["train_command"] = self.ledger.variant(recipe.name)["train_command"]
        trained = json.loads((source / CONFIG_NAME).read_text())["metadata"]
        metadata = {
            **{k: v for k, v in trained.items() if k not in ("metrics", "command")},
            "name": recipe.name,
            "command": measured["train_command"],
            "metrics": measured,
            "paper_metrics": entry.metrics["reference"],
        }
        model = load_pretrained_dir(source)
        model.save_pretrained(directory, metadata=metadata)
        # The weights as the zoo ships them: tensors and version only (no config in the header, which would tie
        # the bytes to this run's paths), so the same trained weights always give the same sha256.
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        atomic_write(directory / WEIGHTS_NAME, lambda tmp: write_safetensors(state, tmp, WEIGHTS_METADATA))
        digest = sha256_file(directory / WEIGHTS_NAME)
        unpublished = ManifestEntry(
            name=recipe.name,
            backbone=entry.backbone,
            dataset=entry.dataset,
            fold=entry.fold,
            train_shot=entry.train_shot,
            status="unpublished",
            metrics={"reference": dict(entry.metrics["reference"]), "measured": measured},
        )
        ManifestEntry.from_dict(recipe.name, unpublished.to_dict())  # the manifest's own validation
        weights = {"filename": WEIGHTS_NAME, "sha256": digest}
        atomic_write_json(
            directory / ENTRY_FILE, {"name": recipe.name, "entry": unpublished.to_dict(), "weights": weights}
        )

    def _result(self, recipe: Recipe, entry: ManifestEntry, directory: Path, state: str) -> VariantResult:
        written = json.loads((directory / ENTRY_FILE).read_text())
        measured, digest = written["entry"]["metrics"]["measured"], written["weights"]["sha256"]
        check = None
        before = entry.metrics["measured"]
        if before or entry.expected_sha256:
            check = {"sha256": digest == entry.expected_sha256} if entry.expected_sha256 else {}
            for key in (k for k in before if isinstance(before[k], (int, float)) and k in measured):
                check[key] = (before[key], measured[key])
        diff = None
        if entry.source == "package" and entry.expected_sha256 and digest != entry.expected_sha256:
            diff = compare_weights(directory / WEIGHTS_NAME, entry.package_paths()[0])
        return VariantResult(recipe.name, state, directory, measured, digest, check, diff)


def _same_recipe(recorded: dict[str, Any] | None, recipe: Recipe) -> bool:
    """Whether a ledger's recipe is ``recipe`` (None: nothing recorded). A ledger of 0.3 recorded the training as
    ``train`` options (``train_args``), some without ``--precision``: read through the train parser, that recipe is
    the same one when all else agrees, and its training resumes in the precision its own ``train_config.json``
    recorded (``train --resume`` reads it), so the precision cannot change mid-run."""
    if recorded is None:
        return True
    if "train_args" in recorded:
        try:
            options = parse_train_command(recorded["train_args"])
        except (TypeError, ValueError):
            return False
        options = {"precision": recipe.run.precision, **options, "data_root": ".", "output": "."}
        run = run_config_from_options(options)
        if (recorded.get("dataset"), recorded.get("fold")) != (run.data.dataset, run.data.fold):
            return False
        kept = {k: v for k, v in recorded.items() if k not in ("train_args", "dataset", "fold")}
        recorded = {**kept, "run": json.loads(json.dumps(run.to_dict()))}
    return recorded == recipe.to_dict()


def _data_roots(data_root: str | Path | Mapping[str, str | Path]) -> dict[str, Path]:
    if isinstance(data_root, Mapping):
        return {k: Path(v) for k, v in data_root.items()}
    return {"*": Path(data_root)}


def reproduce(
    variants: Sequence[str],
    data_root: str | Path | Mapping[str, str | Path],
    output_dir: str | Path,
    *,
    protocol: str = DEFAULT_PROTOCOL,
    backbone_weights: str | None = None,
    preset: str | None = None,
    select: str | None = None,
    seeds: int | None = None,
    gpus: Sequence[int] | None = None,
    gpus_per_run: int = 1,
    manifest: str | Path | None = None,
    progress: bool = True,
    runner: Runner | None = None,
    dry_run: bool = False,
) -> list[VariantResult]:
    """Train, evaluate and package zoo variants; run it again after an interruption to continue.

    Args:
        variants: manifest names, ``fnmatch`` patterns (``ntrenet_*.pascal5i_*``) or ``all`` (the paper variants).
        data_root: one directory for every benchmark, or ``{"pascal5i": DIR, "coco20i": DIR, "synthetic": DIR}``.
        output_dir: ``OUT`` (see the module docstring).
        protocol: the evaluation protocol.
        backbone_weights: for the paper variants: ``reference`` (default), ``timm`` or a path.
        preset: for the paper variants: ``paper`` (default) or ``reference``.
        select: for the paper variants: ``last`` (default) or ``best``.
        seeds: evaluation seeds (default 5; a recorded recipe keeps its own number).
        gpus: CUDA devices to use (None: the CPU).
        gpus_per_run: GPUs per training run (``torchrun`` when > 1).
        manifest: another manifest file.
        progress: progress bars in the children.
        runner: runs a step (default: :func:`run_subprocess`).
        dry_run: print the commands of the first steps and run nothing.

    Returns:
        One :class:`VariantResult` per variant.

    Raises:
        ValueError, FileNotFoundError, HubAccessError: a setting, data root or backbone file the sweep would fail
            on, before any step runs.
    """
    catalogue = load_manifest(manifest)
    names = select_variants(catalogue, variants)
    recipes = [
        recipe_for(
            catalogue.entries[n],
            preset=preset,
            backbone_weights=backbone_weights,
            select=select,
            seeds=seeds,
            protocol=protocol,
        )
        for n in names
    ]
    roots = _data_roots(data_root)
    chosen = {}
    for recipe in recipes:
        root = roots.get(recipe.data_key, roots.get("*"))
        if root is None:
            raise ValueError(f"{recipe.name} needs --data-root {recipe.data_key}=DIR (given: {', '.join(roots)}).")
        chosen[recipe.name] = str(check_data_root(recipe, root))
    check_backbones(recipes)
    groups = gpu_groups(recipes, gpus, gpus_per_run)
    for group in groups:  # a mask the indices do not fit stops the sweep now, not in a child
        if group is not None:
            child_visible_devices(group, os.environ.get("CUDA_VISIBLE_DEVICES"))
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / ".lock", "w") as lock:
        lock_sweep(lock, out)
        run = runner or (lambda step, g: run_subprocess(step, g, lock))
        sweep = _Sweep(out, run, progress, len(recipes))
        if dry_run:
            for recipe in recipes:
                for step in sweep._steps(recipe, chosen[recipe.name], groups[0]):
                    print(step.command())
                    if "--config" in step.argv:  # what the file it reads will say
                        run_dir = out / "work" / recipe.name / "train"
                        print(f"  # {RunDir.RUN_CONFIG}: {recipe.train_command(chosen[recipe.name], run_dir)}")
            return []
        jobs = list(enumerate(recipes, 1))
        results: dict[str, VariantResult] = {}
        errors: list[BaseException] = []

        def worker(group: list[int] | None) -> None:
            while not errors:
                with sweep.print_lock:
                    if not jobs:
                        return
                    index, recipe = jobs.pop(0)
                try:
                    entry = catalogue.entries[recipe.name]
                    results[recipe.name] = sweep.variant(index, recipe, entry, chosen[recipe.name], group)
                except BaseException as error:  # stop handing out variants; re-raised in the caller
                    errors.append(error)
                    if len(groups) == 1:
                        raise

        if len(groups) == 1:
            worker(groups[0])
        else:
            threads = [threading.Thread(target=worker, args=(g,), daemon=True) for g in groups]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            if errors:
                raise errors[0]
    return [results[r.name] for r in recipes if r.name in results]
