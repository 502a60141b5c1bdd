"""Deprecated alias of :mod:`ntre_zoo.pipeline.fine_tune`, kept for one release.

It loads zoo weights, so it moved to the pipeline wing, above training and the zoo. Importing this alias
warns, then makes ``ntre_zoo.training.fine_tune`` the module ``ntre_zoo.pipeline.fine_tune`` itself, so its
names, private helpers and monkeypatching keep working. Nothing in the package imports it.
"""

import sys
import warnings

from ..pipeline import fine_tune

warnings.warn(
    "ntre_zoo.training.fine_tune is deprecated and goes in the next release: use ntre_zoo.pipeline.fine_tune",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = fine_tune
