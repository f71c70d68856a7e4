"""Django peer: sync views on the Django ORM, served by gunicorn (one sync worker)."""
