"""``python -m ntre_zoo`` runs the same CLI as ``ntre-zoo``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
