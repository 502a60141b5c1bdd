"""Deprecated alias of :mod:`ntre_zoo.pipeline.reproduce`, kept for one release.

The sweep builds on training, so it moved to the pipeline wing. Importing this alias warns, then makes
``ntre_zoo.zoo.reproduce`` the module ``ntre_zoo.pipeline.reproduce`` itself, so its names, private helpers and
monkeypatching keep working. Nothing in the package imports it.
"""

import sys
import warnings

from ..pipeline import reproduce

warnings.warn(
    "ntre_zoo.zoo.reproduce is deprecated and goes in the next release: use ntre_zoo.pipeline.reproduce",
    DeprecationWarning,
    stacklevel=2,
)
sys.modules[__name__] = reproduce
