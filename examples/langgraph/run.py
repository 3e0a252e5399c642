"""The example's one command: `.venv/bin/python examples/langgraph/run.py ["question"]`.

Against the local stack (`make up`): starts the graph worker (worker.py) and
a Tidings worker with the example's step and pipeline, runs the `library`
pipeline through the gateway and watches it live (`tidings run library
--watch`), then stops both workers. The usual TIDINGS_* variables point it
elsewhere (README.md's table).
"""

from __future__ import annotations

import sys
from pathlib import Path

from infra.examples import TIDINGS, run_example

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    question = argv[1] if len(argv) > 1 else "Who wrote Dune?"
    return run_example(
        HERE,
        "library",
        question,
        {
            "graph worker": [sys.executable, str(HERE / "worker.py")],
            "tidings worker": [TIDINGS, "worker", "--activities", "steps:activities"],
        },
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
