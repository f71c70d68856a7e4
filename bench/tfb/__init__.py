"""TechEmpower Framework Benchmarks suite for aiosite and its peers (run with cwd=bench/)."""
