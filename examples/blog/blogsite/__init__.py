"""Blogsite: the project package (its apps, templates, static files and site hooks)."""
