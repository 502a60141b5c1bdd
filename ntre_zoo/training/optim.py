"""SGD with the reference's 17 parameter groups and the 10x poly learning-rate schedule (spec 7.1)."""

from __future__ import annotations

import re

import torch
from torch import nn

from .config import TrainConfig

__all__ = ["PARAMETER_GROUPS", "build_optimizer", "parameter_groups", "poly_lr", "set_lr"]

#: The reference's ``_optimizer`` groups in its order, as (reference name, pattern over our parameter names).
PARAMETER_GROUPS: tuple[tuple[str, str], ...] = (
    ("bg_prototype", r"bg_prototype"),
    ("down_bg", r"bg_mining\.reduce\..*"),
    ("bg_res1", r"bg_mining\.refine\..*"),
    ("bg_cls", r"bg_mining\.classifier\..*"),
    ("down_query", r"down_query\..*"),
    ("down_supp", r"down_support\..*"),
    ("init_merge1", r"bins\.\d+\.bg_eliminating\..*"),
    ("init_merge2", r"bins\.\d+\.feature_matching\..*"),
    ("init_merge3", r"bins\.\d+\.do_eliminating\..*"),
    ("inital_beta_conv", r"bins\.\d+\.matching_refine\..*"),
    ("inital_inner_cls", r"bins\.\d+\.initial_classifier\..*"),
    ("alpha_conv", r"bins\.\d+\.inter_scale_merge\..*"),
    ("beta_conv", r"bins\.\d+\.refine\..*"),
    ("inner_cls", r"bins\.\d+\.classifier\..*"),
    ("res1", r"fuse\..*"),
    ("res2", r"fuse_refine\..*"),
    ("cls", r"classifier\..*"),
)


def parameter_groups(model: nn.Module) -> list[dict[str, object]]:
    """The head's trainable parameters split into the reference's 17 groups, in its order.

    Each group is ``{"name": reference name, "params": [...]}``; parameters keep the model's order
    (bins 0, 1, ... inside a group, as the reference's ModuleLists). The frozen backbone is left out.

    Raises:
        ValueError: a trainable parameter matches no group (a model this table does not know).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad and not n.startswith("backbone.")]
    groups: list[dict[str, object]] = []
    taken: set[str] = set()
    for ref_name, pattern in PARAMETER_GROUPS:
        regex = re.compile(pattern)
        params = [p for n, p in named if n not in taken and regex.fullmatch(n)]
        taken.update(n for n, _ in named if regex.fullmatch(n))
        groups.append({"name": ref_name, "params": params})
    left = [n for n, _ in named if n not in taken]
    if left:
        raise ValueError(
            f"Trainable parameters {left} belong to no optimizer group; expected only NTRENet head parameters."
        )
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.SGD:
    """SGD over :func:`parameter_groups` with the config's momentum and weight decay (lr set per step)."""
    lr = config.lr_multiplier * config.base_lr
    return torch.optim.SGD(parameter_groups(model), lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)


def poly_lr(config: TrainConfig, step: int, total_steps: int) -> float:
    """``lr_multiplier * base_lr * (1 - step / total_steps) ** power``; ``step`` counts from 1 as in the reference."""
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps!r}; is the dataset smaller than one batch?")
    progress = min(max(step / total_steps, 0.0), 1.0)
    return config.lr_multiplier * config.base_lr * (1.0 - progress) ** config.power


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Set every group's learning rate (the reference gives all 17 groups the same rate)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
