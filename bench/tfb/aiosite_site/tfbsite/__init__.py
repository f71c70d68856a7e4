"""The TechEmpower benchmark project (bench/tfb)."""
