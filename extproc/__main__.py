"""`python -m extproc`: the gateway's ext_proc and access-log receiver."""

from __future__ import annotations

import sys

from extproc.app import main

if __name__ == "__main__":
    sys.exit(main())
