import sys

from pooler.cli.main import main

sys.exit(main())
