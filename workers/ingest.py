"""``python -m workers.ingest``: the ingest writer, under the entry point the design names.

The contract (DESIGN.md's process table) calls the writer ``workers.ingest``; the code is
the ``workers.writer`` package, which ``queuefront writer`` and ``python -m workers.writer``
run. This module only starts it, so the two names can never run different code.
"""

from workers.writer import main

if __name__ == "__main__":
    main()
