"""TechEmpower's six tests, written as an aiosite user would write them.

The database tests exist twice: at /db, /queries, /fortunes and /updates through the
fast data path (``aiosite.Prepared`` statements on the driver), and under /orm through
the ordinary request session (``db_session``) and the ORM.
"""

from aiosite import App

app = App("world", prefix="")
