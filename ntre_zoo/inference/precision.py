"""Numeric precision of inference: ``precision="fp32" | "bf16" | "fp16" | "auto"`` and what ``auto`` picks.

``auto`` is bf16 autocast where it pays and fp32 elsewhere. bf16 pays when both hold:

* the hardware computes bf16 natively:

  * CPU: torch reports AVX512-BF16 or AMX tiles (``torch.cpu._is_avx512_bf16_supported``,
    ``_is_amx_tile_supported``). Without them bf16 is emulated and runs many times slower than fp32
    (measured in ``docs/performance.md``);
  * CUDA: compute capability 8.0 and newer (Ampere, Hopper: bf16 tensor cores);
  * any other device: never;

* the model does enough work per query (:func:`bf16_pays`): a small model spends its time in the fixed cost of
  each operation, which autocast's casts add to, not in the arithmetic bf16 speeds up. Measured on an AMD EPYC
  with AVX512-BF16 (``docs/performance.md``): the shipped tiny model at its 129 px canvas is 1.1 to 1.5x slower
  in bf16, while ResNet-50 at 473 is 3x faster per cached query.

So ``auto`` is never the slower choice on the models the zoo ships, and its answer depends only on the model
and the hardware (never on a timing), so the same call gives the same numbers every time on one machine.

A public function resolves ``precision`` once, where it is called (:func:`autocast_dtype`), and hands the
resolved dtype to the helpers it calls.

``amp_dtype`` is the older spelling of the same choice, deprecated (:func:`precision_of_amp_dtype`: it warns and
goes in the next release): ``amp_dtype=torch.bfloat16`` is ``precision="bf16"`` and ``torch.float16`` is
``"fp16"`` (None: not given); passing it together with a ``precision`` other than the function's default is an
error unless the two agree.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import warn_deprecated
from ..model.config import check_amp_dtype
from ..model.types import FewShotSegmenter

__all__ = [
    "BF16_MIN_WORK",
    "PRECISIONS",
    "autocast_dtype",
    "bf16_pays",
    "cpu_capabilities",
    "native_bf16",
    "precision_of_amp_dtype",
    "query_work",
    "resolve_precision",
]

#: Accepted values of ``precision``.
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
_CPU_FLAGS = ("avx2", "avx512", "avx512_bf16", "amx_tile", "amx_fp16", "vnni")

#: The least work per query, in :func:`query_work` units (about multiply-accumulates), for which ``auto`` picks
#: bf16. Measured on an AMD EPYC with AVX512-BF16 (no AMX), one thread, the shipped tiny model's layout: bf16
#: is 1.1-1.5x slower than fp32 at 129 and 193 px (work 0.05e9 and 0.12e9), even at 257 px (0.20e9) and 0.73x
#: at 353 px (0.39e9); the full-depth narrow ResNet-50 (460k parameters) at 473 px (1.6e9) is 0.64-0.71x and
#: ResNet-50 at 473 (1.6e11) 0.33x. The threshold sits where the gain is clear on a CPU without AMX.
BF16_MIN_WORK = 4e8
_PARAMETER_COUNT = "_ntre_zoo_parameter_count"  # the model's attribute caching its parameter count


def cpu_capabilities() -> dict[str, Any]:
    """What torch detects on this CPU: the ATen kernel level (``capability``, e.g. ``AVX2``) and the
    instruction-set flags that matter for reduced precision (absent flags read as False)."""
    flags: dict[str, Any] = {"capability": torch.backends.cpu.get_cpu_capability()}
    for flag in _CPU_FLAGS:
        probe = getattr(torch.cpu, f"_is_{flag}_supported", None)
        flags[flag] = bool(probe()) if probe is not None else False
    return flags


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bf16 natively (CPU: AVX512-BF16 or AMX; CUDA: compute capability >= 8.0)."""
    device = torch.device(device)
    if device.type == "cpu":
        flags = cpu_capabilities()
        return bool(flags["avx512_bf16"] or flags["amx_tile"])
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
    return False


def query_work(model: FewShotSegmenter) -> float:
    """A size-and-width estimate of one query pass: parameters x (test_size / 8)^2.

    Every weight of the dilated backbone's later stages and of the head is applied at most once per position of
    the stride-8 feature map, so this is about the multiply-accumulates of a query; it is an order of
    magnitude to compare with :data:`BF16_MIN_WORK`, cheap to compute (no forward pass) and exact to repeat.
    """
    count = getattr(model, _PARAMETER_COUNT, None)
    if count is None:  # walking the modules costs 0.3 ms, 2% of the shipped model's query: count once per model
        count = sum(p.numel() for p in model.parameters())
        setattr(model, _PARAMETER_COUNT, count)
    return count * (model.config.test_size / 8) ** 2


def bf16_pays(model: FewShotSegmenter | None) -> bool:
    """Whether ``model`` does enough work per query for bf16 to beat fp32 (None: a full-size model, yes)."""
    return model is None or query_work(model) >= BF16_MIN_WORK


def _check(precision: Any) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    return str(precision)


def resolve_precision(
    precision: str = "auto", device: str | torch.device = "cpu", model: FewShotSegmenter | None = None
) -> str:
    """``fp32``, ``bf16`` or ``fp16``: ``precision`` itself, or what ``auto`` means for ``model`` on ``device``
    (without a model: for a full-size one)."""
    precision = _check(precision)
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) and bf16_pays(model) else "fp32"  # the cheap test first


def autocast_dtype(
    precision: str,
    device: str | torch.device,
    amp_dtype: torch.dtype | None = None,
    *,
    default: str = "auto",
    model: FewShotSegmenter | None = None,
) -> torch.dtype | None:
    """The autocast dtype of ``precision`` for ``model`` on ``device``; None means fp32.

    Args:
        precision: one of :data:`PRECISIONS`.
        device: where the model runs.
        amp_dtype: deprecated older spelling (``torch.bfloat16``, ``torch.float16`` or None), see
            :func:`precision_of_amp_dtype`.
        default: the calling function's default ``precision`` (only a non-default one conflicts with ``amp_dtype``).
        model: the model that will run (``auto`` weighs its work per query); None: a full-size model.

    Raises:
        ValueError: an unknown precision, or ``amp_dtype`` with a different non-default ``precision``.
        TypeError: an ``amp_dtype`` that is not one of autocast's dtypes.
    """
    if amp_dtype is not None:
        precision = precision_of_amp_dtype(precision, amp_dtype, default=default, function="autocast_dtype")
    return _DTYPES[resolve_precision(precision, device, model)]


def precision_of_amp_dtype(precision: str, amp_dtype: Any, *, default: str, function: str) -> str:
    """The ``precision`` a call of ``function`` asks for: ``precision``, or the name its deprecated ``amp_dtype``
    spells (``torch.bfloat16`` = ``"bf16"``, ``torch.float16`` = ``"fp16"``), with a ``DeprecationWarning``.

    Raises:
        ValueError: an unknown precision, or ``amp_dtype`` with a ``precision`` other than ``default`` and its own.
        TypeError: an ``amp_dtype`` that is not one of autocast's dtypes.
    """
    precision = _check(precision)
    amp_dtype = check_amp_dtype(amp_dtype)
    if amp_dtype is None:
        return precision
    name = _NAMES[amp_dtype]
    warn_deprecated(f"{function}(amp_dtype={amp_dtype})", f"precision={name!r}")
    if precision not in (default, name):
        raise ValueError(
            f"amp_dtype={amp_dtype} and precision={precision!r} disagree; pass only precision= "
            "(amp_dtype is its deprecated older spelling)."
        )
    return name
