"""``python -m lab.flower.supernode [--poll-s S] <flower-supernode arguments>``: Flower's SuperNode, polling faster.

Flower 1.42's SuperNode asks its SuperLink for a message and, when there is none, sleeps a hard-coded 3 s
(``flwr.supernode.start_client_internal``); it also pushes a ClientApp's reply only on its next pass through that
loop. A control round of the cell (PS -> every device -> PS) therefore waits 0-3 s for the pick-up and another 0-3 s
for the reply, on top of the ClientApp's own work: measured by ``otalab bench cell``. This entry point runs the same
SuperNode with that idle wait shortened to ``--poll-s`` (default 0.2 s: one small gRPC call per poll) and the
SuperExec's task poll (``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``, Flower's own setting, default 1 s) set to the same.

Nothing else is changed: every other argument goes to ``flower-supernode`` as it is, so the multi-host commands of
docs/cell.md work with either. If a Flower release no longer has the 3 s idle wait, the SuperNode runs unchanged and
says so on stderr.
"""

from __future__ import annotations

import inspect
import os
import sys
import time

IDLE_WAIT_S = 3          # Flower 1.42's hard-coded idle sleep in the SuperNode's pull loop
DEFAULT_POLL_S = 0.2


class _ShortIdleWait:
    """The ``time`` module as the SuperNode's loop sees it, with its idle wait of IDLE_WAIT_S shortened."""

    def __init__(self, poll_s: float):
        self.poll_s = poll_s

    def __getattr__(self, name):
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        time.sleep(self.poll_s if seconds == IDLE_WAIT_S else seconds)


def shorten_idle_wait(poll_s: float) -> bool:
    """Make the SuperNode of this process poll every ``poll_s`` seconds when idle; False if this Flower has no such
    wait (nothing is changed then)."""
    if not 0.01 <= poll_s <= IDLE_WAIT_S:
        raise ValueError(f"--poll-s {poll_s}: expected 0.01..{IDLE_WAIT_S} seconds")
    from flwr.supernode import start_client_internal as loop

    if f"time.sleep({IDLE_WAIT_S})" not in inspect.getsource(loop):
        return False
    loop.time = _ShortIdleWait(poll_s)
    return True


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    poll_s = DEFAULT_POLL_S
    if "--poll-s" in args:
        i = args.index("--poll-s")
        try:
            poll_s = float(args[i + 1])
        except (IndexError, ValueError):
            print("--poll-s: expected a number of seconds", file=sys.stderr)
            return 2
        del args[i:i + 2]
    try:
        if not shorten_idle_wait(poll_s):
            print(f"lab.flower.supernode: this Flower has no {IDLE_WAIT_S} s idle wait to shorten; running it "
                  f"unchanged", file=sys.stderr)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    os.environ.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", str(poll_s))   # inherited by the SuperExec it starts
    from flwr.supernode.cli import flower_supernode

    sys.argv = ["flower-supernode", *args]
    return flower_supernode()


if __name__ == "__main__":
    sys.exit(main())
