"""Deprecated alias of :mod:`ntre_zoo.pipeline.recipes`, kept for one release.

The recipes build on training, so they moved to the pipeline wing. Importing this alias warns, then makes
``ntre_zoo.zoo.recipes`` the module ``ntre_zoo.pipeline.recipes`` itself, so its names, private helpers and
monkeypatching keep working. Nothing in the package imports it.
"""

import sys
import warnings

from ..pipeline import recipes

warnings.warn(
    "ntre_zoo.zoo.recipes is deprecated and goes in the next release: use ntre_zoo.pipeline.recipes",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = recipes
