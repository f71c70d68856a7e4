"""WSGI entry point: `gunicorn tfb.peers.django_site.wsgi:application` (cwd=bench/)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tfb.peers.django_site.settings")

application = get_wsgi_application()
