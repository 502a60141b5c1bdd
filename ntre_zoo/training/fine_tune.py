"""Deprecated alias of :mod:`ntre_zoo.pipeline.fine_tune`, kept for one release.

It loads zoo weights, so it moved to the pipeline wing. Importing this alias warns and makes it that module itself;
nothing in the package imports it.
"""

from ..errors import alias_moved_module
from ..pipeline import fine_tune

alias_moved_module(__name__, fine_tune)
