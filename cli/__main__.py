"""``python -m cli <command>``: the ``tidings`` console script without installing it."""

import sys

from cli.main import main

sys.exit(main())
