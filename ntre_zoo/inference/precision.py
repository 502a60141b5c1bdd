"""Numeric precision of inference: ``precision="fp32" | "bf16" | "fp16" | "auto"`` and what ``auto`` picks.

``auto`` is bf16 autocast where the hardware computes bf16 natively and fp32 elsewhere:

* CPU: bf16 when torch reports AVX512-BF16 or AMX tiles (``torch.cpu._is_avx512_bf16_supported``,
  ``_is_amx_tile_supported``). Without them bf16 is emulated and runs many times slower than fp32
  (measured in ``docs/performance.md``), so ``auto`` never picks it there.
* CUDA: bf16 on compute capability 8.0 and newer (Ampere, Hopper: bf16 tensor cores), fp32 before.
* any other device: fp32.

``amp_dtype`` is the older spelling of the same choice and stays accepted: ``amp_dtype=torch.bfloat16`` is
``precision="bf16"`` and ``torch.float16`` is ``"fp16"`` (None: not given); passing it together with a
``precision`` other than the function's default is an error unless the two agree.
"""

from __future__ import annotations

from typing import Any

import torch

from ..model.config import check_amp_dtype

__all__ = [
    "PRECISIONS",
    "autocast_dtype",
    "cpu_capabilities",
    "native_bf16",
    "resolve_precision",
]

#: Accepted values of ``precision``.
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
_NAMES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
_CPU_FLAGS = ("avx2", "avx512", "avx512_bf16", "amx_tile", "amx_fp16", "vnni")


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


def _check(precision: Any) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
    return str(precision)


def resolve_precision(precision: str = "auto", device: str | torch.device = "cpu") -> str:
    """``fp32``, ``bf16`` or ``fp16``: ``precision`` itself, or what ``auto`` means on ``device``."""
    precision = _check(precision)
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def autocast_dtype(
    precision: str,
    device: str | torch.device,
    amp_dtype: torch.dtype | None = None,
    *,
    default: str = "auto",
) -> torch.dtype | None:
    """The autocast dtype of ``precision`` (or of the alias ``amp_dtype``) on ``device``; None means fp32.

    Args:
        precision: one of :data:`PRECISIONS`.
        device: where the model runs.
        amp_dtype: the older spelling (``torch.bfloat16``, ``torch.float16`` or None); when given it stands for
            its precision name.
        default: the calling function's default ``precision`` (only a non-default one conflicts with ``amp_dtype``).

    Raises:
        ValueError: an unknown precision, or ``amp_dtype`` with a different non-default ``precision``.
        TypeError: an ``amp_dtype`` that is not one of autocast's dtypes.
    """
    precision = _check(precision)
    amp_dtype = check_amp_dtype(amp_dtype)
    if amp_dtype is not None:
        if precision not in (default, _NAMES[amp_dtype]):
            raise ValueError(
                f"amp_dtype={amp_dtype} and precision={precision!r} disagree; pass only precision= "
                "(amp_dtype is its older spelling)."
            )
        precision = _NAMES[amp_dtype]
    return _DTYPES[resolve_precision(precision, device)]
