"""A reproduce sweep's steps as ``ntre-zoo`` child processes: the step, the GPUs a child sees through the parent's
``CUDA_VISIBLE_DEVICES``, a child out of GPU memory, and the lock the children inherit."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

__all__ = [
    "EXIT_OUT_OF_MEMORY",
    "Runner",
    "Step",
    "child_visible_devices",
    "lock_sweep",
    "out_of_memory_advice",
    "run_subprocess",
]


@dataclass(frozen=True)
class Step:
    """One ``ntre-zoo`` command of a sweep.

    Args:
        variant: the variant it belongs to.
        name: ``train`` or ``eval_{K}shot``.
        argv: the arguments after ``ntre-zoo``.
        env: extra environment variables.
        nproc: processes (``torchrun`` when > 1).
    """

    variant: str
    name: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    nproc: int = 1

    def command(self) -> str:
        """The shell command, as a user would type it."""
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in self.env)
        launcher = f"torchrun --nproc_per_node={self.nproc} -m ntre_zoo" if self.nproc > 1 else "ntre-zoo"
        return " ".join(w for w in (env, launcher, shlex.join(self.argv)) if w)


#: ``runner(step, gpus) -> exit status``; ``gpus`` is None on the CPU, else device indices as this process sees them
#: (through its own ``CUDA_VISIBLE_DEVICES``). :data:`EXIT_OUT_OF_MEMORY` says the step ran out of GPU memory.
Runner = Callable[[Step, "Sequence[int] | None"], int]

#: The status :func:`run_subprocess` gives a failed step whose output reported CUDA running out of memory (no
#: ``ntre-zoo`` command exits with it): a rerun would fail the same way, so the sweep says what to change.
EXIT_OUT_OF_MEMORY = 97
_OUT_OF_MEMORY_TEXT = (b"out of memory", b"OutOfMemoryError")


def child_visible_devices(gpus: Sequence[int], parent_mask: str | None) -> str:
    """The ``CUDA_VISIBLE_DEVICES`` of a child that should use this process's devices ``gpus``.

    ``gpus`` are indices as this process sees them; under a mask set before (by SLURM, a container, a user), index
    ``i`` is the mask's ``i``-th entry, an index or a UUID (``GPU-...``, ``MIG-...``), so the child gets those
    entries, not the raw indices (which would name other physical GPUs).

    Args:
        gpus: device indices in this process's view.
        parent_mask: this process's ``CUDA_VISIBLE_DEVICES`` (None: unset, every device visible).

    Raises:
        ValueError: an index the mask does not have, naming the mask.
    """
    if parent_mask is None:
        return ",".join(map(str, gpus))
    entries = [e.strip() for e in parent_mask.split(",") if e.strip()]
    outside = [g for g in gpus if not 0 <= g < len(entries)]
    if outside:
        raise ValueError(
            f"--gpus {','.join(map(str, gpus))} names device {', '.join(map(str, outside))}, but "
            f"CUDA_VISIBLE_DEVICES={parent_mask!r} shows this process {len(entries)} device(s), indexed 0 to "
            f"{len(entries) - 1}. --gpus counts within that mask: pass indices below {len(entries)}."
        )
    return ",".join(entries[g] for g in gpus)


def _child_command(step: Step) -> list[str]:
    command = [sys.executable, "-m", "ntre_zoo", *step.argv]
    if step.nproc > 1:
        command[1:3] = [
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={step.nproc}",
            "-m",
            "ntre_zoo",
        ]
    return command


def run_subprocess(step: Step, gpus: Sequence[int] | None, lock: TextIO | None = None) -> int:
    """Run ``step`` as a child process (this Python, ``-m ntre_zoo``); it inherits ``lock``'s descriptor, so the
    sweep's lock is held until the child ends, even if this process is killed first.

    The child sees the GPUs ``gpus`` mapped through this process's ``CUDA_VISIBLE_DEVICES``
    (:func:`child_visible_devices`), and no GPU at all when ``gpus`` is None (a CPU step stays on the CPU). Its
    standard error passes through; a failure that reported CUDA running out of memory returns
    :data:`EXIT_OUT_OF_MEMORY`.
    """
    env = {**os.environ, **dict(step.env)}
    env["CUDA_VISIBLE_DEVICES"] = (
        "" if gpus is None else child_visible_devices(gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
    )
    fds = (lock.fileno(),) if lock is not None else ()
    out_of_memory = threading.Event()
    with subprocess.Popen(_child_command(step), env=env, pass_fds=fds, stderr=subprocess.PIPE) as child:
        relay = threading.Thread(target=_relay_stderr, args=(child.stderr, out_of_memory), daemon=True)
        relay.start()
        try:
            code = child.wait()
        except BaseException:  # Ctrl-C or an error here: do not leave the child training
            child.terminate()
            child.wait()
            raise
        relay.join()
    return EXIT_OUT_OF_MEMORY if code != 0 and out_of_memory.is_set() else code


def _relay_stderr(stream: Any, out_of_memory: threading.Event) -> None:
    """Copy a child's standard error to ours as it comes, and note whether it said CUDA ran out of memory."""
    tail = b""
    for chunk in iter(lambda: stream.read1(1 << 16), b""):
        sys.stderr.write(chunk.decode(errors="replace"))
        sys.stderr.flush()
        tail = tail[-64:] + chunk
        if any(text in tail for text in _OUT_OF_MEMORY_TEXT):
            out_of_memory.set()


def out_of_memory_advice(step: Step, gpus: Sequence[int] | None) -> str:
    """What to change when ``step`` ran out of GPU memory (running the same sweep again fails the same way)."""
    where = f"GPU {','.join(map(str, gpus))}" if gpus else "the GPU"
    return (
        f"out of GPU memory on {where}; running the same command again fails the same way. Check that nothing else "
        "uses that GPU (nvidia-smi), then give each training more GPUs (--gpus-per-run 2, which halves the episodes "
        "per GPU), use a GPU with more memory, or train this variant by hand with a smaller --batch-size (a "
        "different recipe, recorded in its model card)."
    )


def lock_sweep(handle: TextIO, out: Path) -> None:
    """Hold an exclusive lock on ``OUT/.lock`` (where ``fcntl`` exists: POSIX) for the sweep and its children."""
    try:
        import fcntl
    except ImportError:
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise RuntimeError(
            f"Another reproduce (or a training it started) is still writing into {out}; wait for it or stop it."
        ) from None
