"""Helpers several test packages share (nginx, ...)."""
