"""``eval_view``: a module in eval mode without changing the module (for thread-safe inference)."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["eval_view"]


def eval_view(module: Any) -> Any:
    """``module`` in eval mode without touching it: a copy of every module object (so each has its own
    ``training`` flag, set to False) whose parameters and buffers are the original's tensors, not copies.

    BatchNorm then uses its running statistics and dropout is off, as in ``model.eval()``, while the model
    and every thread using it keep their own mode; nothing is written to the shared tensors. Hooks are shared.
    """
    view = copy.copy(module)
    view.__dict__["_modules"] = {
        name: None if child is None else eval_view(child) for name, child in module._modules.items()
    }
    view.training = False
    return view
