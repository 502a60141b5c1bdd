"""Deprecated alias of :mod:`ntre_zoo.pipeline.reproduce`, kept for one release.

The sweep builds on training, so it moved to the pipeline wing. Importing this alias warns and makes it that module
itself; nothing in the package imports it.
"""

from ..errors import alias_moved_module
from ..pipeline import reproduce

alias_moved_module(__name__, reproduce)
