"""``queuefront init``: compose's one-shot service — the queues, then the migrations.

In AWS the queues are Terraform resources and the migrations a one-off ``migrate`` task;
a local stack has neither, so one container does both before the processes start.
"""

from __future__ import annotations

import sys

from queuefront import migrate, queues


def main() -> None:
    for step in (queues.main, migrate.main):
        sys.argv = sys.argv[:1]  # each step parses its own arguments: none are given
        step()


if __name__ == "__main__":
    main()
