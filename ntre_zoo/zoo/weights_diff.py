"""Two weights files compared tensor by tensor: which differ, by how much, and whether only running statistics do.

Two runs of one recipe on two kinds of CPU can write different bytes while training the same parameters: the
running statistics of BatchNorm (``running_mean``, ``running_var``) are averages of activations, and a
convolution whose kernel the CPU model selects can round those activations differently without the difference
reaching any gradient (docs/reproducing.md shows where in the shipped model). This module says which case a
pair of files is in, so ``reproduce`` and its proof test check exactly what holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

__all__ = ["CROSS_CPU_STATISTICS_ATOL", "RUNNING_STATISTICS", "WeightsDiff", "compare_weights"]

#: Names (last component) of the tensors that are statistics, not trained parameters.
RUNNING_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")

#: The largest absolute difference of a running statistic that still counts as "the same training on another CPU".
#: Measured: 1.2e-7 at most between the shipped model and its regeneration on an Intel Xeon (Sapphire Rapids) and
#: on an AMD EPYC (Zen 4); 1e-6 leaves a margin of 8x and is far below any change of the recipe, which moves
#: the parameters themselves.
CROSS_CPU_STATISTICS_ATOL = 1e-6


@dataclass(frozen=True)
class WeightsDiff:
    """How the tensors of file ``a`` differ from those of file ``b``.

    Args:
        missing: names in only one of the files.
        parameters: trained tensors that are not bit-equal, with their largest absolute difference.
        statistics: running statistics that are not bit-equal, with their largest absolute difference.
    """

    missing: tuple[str, ...]
    parameters: dict[str, float]
    statistics: dict[str, float]

    @property
    def identical(self) -> bool:
        """Every tensor bit-equal (the files may still differ in their header)."""
        return not (self.missing or self.parameters or self.statistics)

    def same_training(self, atol: float = CROSS_CPU_STATISTICS_ATOL) -> bool:
        """The same names, every parameter bit-equal and every running statistic within ``atol``."""
        return not self.missing and not self.parameters and all(d <= atol for d in self.statistics.values())

    def summary(self) -> str:
        """One line: what differs and by how much."""
        if self.identical:
            return "every tensor bit-equal"
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} tensor(s) in one file only ({', '.join(self.missing[:3])})")
        for kind, diffs in (("parameter", self.parameters), ("running statistic", self.statistics)):
            if diffs:
                parts.append(f"{len(diffs)} {kind}(s) differ, by at most {max(diffs.values()):.2g}")
            elif kind == "parameter" and not self.missing:
                parts.append("every parameter bit-equal")
        return "; ".join(parts)


def compare_weights(a: str | Path, b: str | Path) -> WeightsDiff:
    """Compare two safetensors files tensor by tensor (see :class:`WeightsDiff`)."""
    first, second = load_file(str(a)), load_file(str(b))
    missing = tuple(sorted(set(first) ^ set(second)))
    parameters: dict[str, float] = {}
    statistics: dict[str, float] = {}
    for name in sorted(set(first) & set(second)):
        x, y = first[name], second[name]
        if x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y):
            continue
        same_shape = x.shape == y.shape
        difference = (x.double() - y.double()).abs().max().item() if same_shape and x.numel() else float("inf")
        (statistics if name.rsplit(".", 1)[-1] in RUNNING_STATISTICS else parameters)[name] = difference
    return WeightsDiff(missing, parameters, statistics)
