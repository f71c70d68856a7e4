"""``python -m aiosite`` is the ``aiosite`` command."""

from aiosite.cli import main

main()
