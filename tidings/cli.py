"""``python -m tidings.cli``: the same as ``python -m cli``, kept so scripts and
deployments that spell it this way go on working."""

import sys

from cli.main import main

if __name__ == "__main__":
    sys.exit(main())
