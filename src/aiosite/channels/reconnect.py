"""What the Redis and PostgreSQL backends share when their listening connection is lost:
the delays between attempts, and one log line when it goes and one when it is back."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator

from aiosite.channels.config import ReconnectSettings
from aiosite.exceptions import one_line

logger = logging.getLogger("aiosite.channels")


def backoff(settings: ReconnectSettings) -> Iterator[float]:
    """Seconds to wait before each attempt: ``initial`` doubled up to ``max``, each
    between half and all of it so that the processes of a site do not reconnect in step."""
    delay = settings.initial
    while True:
        yield delay * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret
        delay = min(delay * 2, settings.max)


def longest(settings: ReconnectSettings) -> float:
    """The longest wait, with the same jitter."""
    return settings.max * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not a secret


class Outage:
    """Logs a lost connection once (WARNING), however many attempts fail, a refusal
    (ERROR) once, and the connection's return once (INFO)."""

    def __init__(self, server: str) -> None:
        self.server = server
        self.down = False
        self._refusal_logged = False

    def lost(self, exc: BaseException) -> None:
        if not self.down:
            self.down = True
            logger.warning(
                "The broadcast hub lost its %s connection (%s); reconnecting. Messages "
                "published meanwhile do not reach this process",
                self.server,
                one_line(exc),
            )

    def refused(self, exc: BaseException, retry_in: float) -> None:
        """The server answered but refuses what the hub needs (a user without the
        rights): no point trying again soon, and someone must change the setup."""
        self.down = True
        if not self._refusal_logged:
            self._refusal_logged = True
            logger.error(
                "%s refuses the broadcast hub's listening connection (%s); trying again "
                "every %g s. Messages do not reach this process until it is allowed",
                self.server,
                one_line(exc),
                retry_in,
            )

    def restored(self, listening: int) -> bool:
        """Whether the connection was down (and is back: logged)."""
        self._refusal_logged = False
        if not self.down:
            return False
        self.down = False
        logger.info(
            "The broadcast hub reconnected to %s, listening again on %d channel(s)",
            self.server,
            listening,
        )
        return True
