"""The app wing: a web page to try a model (:func:`build_app`, Gradio, ``pip install 'ntre-zoo[app]'``).

It comes after the zoo (it lists and loads the zoo's models) and before the cli (``ntre-zoo app``). Gradio is
imported only when an app is built.
"""

from .ui import MAX_SUPPORTS, MAX_UPLOAD, MAX_VIDEO_FRAMES, build_app, launch

__all__ = ["MAX_SUPPORTS", "MAX_UPLOAD", "MAX_VIDEO_FRAMES", "build_app", "launch"]
