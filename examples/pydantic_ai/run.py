"""The example's one command: `.venv/bin/python examples/pydantic_ai/run.py ["question"]`.

Against the local stack (`make up`): starts a worker with your agent's step
and pipeline, runs the `trip` pipeline through the gateway and watches it
live (`tidings run trip --watch`), then stops the worker. The usual
TIDINGS_* variables point it elsewhere (README.md's table).
"""

from __future__ import annotations

import sys
from pathlib import Path

from infra.examples import TIDINGS, run_example

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    question = argv[1] if len(argv) > 1 else "Plan a trip to Lisbon"
    return run_example(
        HERE,
        "trip",
        question,
        {"trip worker": [TIDINGS, "worker", "--activities", "trip:activities"]},
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
