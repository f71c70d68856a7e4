"""Soak: the example blog under aiosite serve for minutes at a steady rate (bench/README.md)."""
