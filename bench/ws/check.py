"""Both websocket servers deliver every message to every subscriber once and in order:
`python -m ws.check` (part of `make -C bench check`; a few seconds, no load).

Each implementation runs in one process on the memory backend; the driver opens
--subscribers subscribers, publishes messages at full speed and at a fixed rate, and
counts what each subscriber received. The load run (`python -m ws.run`) checks the same
on every backend and fails on any delivery error.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence

from tfb.servers import BENCH, BENCH_PYTHON

from ws import servers
from ws.servers import NAMES, Backend


def check(name: str, args: argparse.Namespace) -> str | None:
    """None when every message reached every subscriber once, in order; else what not."""
    with servers.group(name, Backend("memory", None, "wscheck"), 1, python=args.python) as group:
        command = [
            str(args.python),
            *("-m", "ws.driver", "load"),
            *("--subscribe", *group.subscribe_urls()),
            *("--stats", *group.stats_urls()),
            *("--publish", group.publish_url()),
            *("--subscribers", str(args.subscribers)),
            *("--warmup", "10", "--messages", str(args.messages), "--window", "16"),
            *("--rate", "200", "--rate-messages", "40"),
        ]
        done = subprocess.run(command, cwd=BENCH, capture_output=True, text=True)
    if done.returncode != 0:
        return f"the driver exited with {done.returncode}:\n{done.stderr[-2000:]}"
    result = json.loads(done.stdout.strip().splitlines()[-1])
    wrong = {kind: n for kind, n in result["errors"].items() if n}
    if "error" in result or wrong:
        return f"{result.get('error', '')} {wrong}".strip()
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("servers", nargs="*", default=list(NAMES))
    parser.add_argument("--subscribers", type=int, default=50)
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--python", default=str(BENCH_PYTHON), help="the servers' python")
    args = parser.parse_args(argv)
    failed = False
    for name in args.servers:
        problem = check(name, args)
        if problem is None:
            print(
                f"PASS {name}: {args.messages + 50} messages to {args.subscribers} websocket "
                "subscribers, each once and in order"
            )
        else:
            print(f"FAIL {name}: {problem}")
            failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
