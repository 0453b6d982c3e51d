"""`python -m extproc`: the gateway's ext_proc and access-log receiver."""

from __future__ import annotations

import sys

from extproc import memdebug
from extproc.app import main

if __name__ == "__main__":
    memdebug.install()  # no-op unless POOLER_EXTPROC_MEMDEBUG is set
    sys.exit(main())
