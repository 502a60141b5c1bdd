"""Deprecated alias of :mod:`ntre_zoo.pipeline.recipes`, kept for one release.

The recipes build on training, so they moved to the pipeline wing. Importing this alias warns and makes it that
module itself; nothing in the package imports it.
"""

from ..errors import alias_moved_module
from ..pipeline import recipes

alias_moved_module(__name__, recipes)
