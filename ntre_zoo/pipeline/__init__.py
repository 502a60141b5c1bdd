"""The pipeline wing: what builds on training, evaluation and the zoo together.

:mod:`~ntre_zoo.pipeline.fine_tune` trains any NTRENet, including one named in the zoo;
:mod:`~ntre_zoo.pipeline.recipes` says how each zoo variant is trained and evaluated, and
:mod:`~ntre_zoo.pipeline.reproduce` runs those recipes into publishable directories. The functions
``fine_tune`` and ``reproduce`` are imported from their modules (``from ntre_zoo.pipeline.fine_tune import
fine_tune``): exported here, they would hide the modules of the same name.
"""

from .recipes import Recipe, recipe_for, select_variants
from .reproduce import VariantResult

__all__ = ["Recipe", "VariantResult", "recipe_for", "select_variants"]
