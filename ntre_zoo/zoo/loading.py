"""Strict state-dict loading whose error names every missing, unexpected or mis-shaped key."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

from ..errors import StateDictMismatchError

__all__ = ["load_state_dict_strict"]

_SHOWN = 12


def _listing(keys: Iterable[str], describe: Callable[[str], str]) -> str:
    keys = list(keys)
    shown = ", ".join(describe(k) for k in keys[:_SHOWN])
    return shown + (f" ... and {len(keys) - _SHOWN} more" if len(keys) > _SHOWN else "")


def load_state_dict_strict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str,
    describe: Callable[[str], str] | None = None,
    hint: str = "",
) -> None:
    """Load ``state_dict`` into ``model`` only if keys and shapes match exactly.

    Args:
        model: the module to fill.
        state_dict: tensors by ntre_zoo key.
        source: what the weights came from, for the message (a path or a name).
        describe: turns a key into the text shown for it (e.g. adds the reference code's name).
        hint: appended to the message: what to do about it.

    Raises:
        StateDictMismatchError: missing keys, unexpected keys or different shapes; nothing is loaded.
    """
    describe = describe or (lambda key: key)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mis_shaped = sorted(
        k for k in set(expected) & set(state_dict) if tuple(expected[k].shape) != tuple(state_dict[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing, describe)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected, describe)}")
    if mis_shaped:
        shapes = {
            k: f"{describe(k)} {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}" for k in mis_shaped
        }
        problems.append(f"{len(mis_shaped)} shape mismatch(es): {_listing(mis_shaped, shapes.__getitem__)}")
    if problems:
        raise StateDictMismatchError(
            f"The weights from {source} do not match the model: "
            + "; ".join(problems)
            + "."
            + (f" {hint}" if hint else "")
        )
    model.load_state_dict(dict(state_dict), strict=True)
