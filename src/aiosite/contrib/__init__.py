"""Apps that ship with aiosite; each is listed in ``apps:`` like a project's own."""
