"""``python -m blogsite ...`` is ``aiosite ...`` run in this project."""

from pathlib import Path

from aiosite.cli import main

if __name__ == "__main__":
    # The guard matters: the autoreloader's worker process imports this module again.
    main(project=Path(__file__).resolve().parent.parent)
