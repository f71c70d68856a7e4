"""Alembic runs this file for every `aiosite db ...` command (and for plain `alembic`).

aiosite builds the configuration from the project's settings: the database is
database.url (and database.schema_name on PostgreSQL), the target is the models of every
app listed in apps:. See aiosite's docs/migrations.md to change what happens here.
"""

from aiosite.db.migrations import run_migrations

run_migrations()
