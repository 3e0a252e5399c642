"""The example's one command: `.venv/bin/python examples/openai_agents/run.py ["question"]`.

Against the local stack (`make up`): starts the agent worker (worker.py) and
a Tidings worker with the example's step and pipeline, runs the `weather`
pipeline through the gateway and watches it live (`tidings run weather
--watch`), then stops both workers. The usual TIDINGS_* variables point it
elsewhere (README.md's table).
"""

from __future__ import annotations

import sys
from pathlib import Path

from infra.examples import TIDINGS, run_example

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    question = argv[1] if len(argv) > 1 else "What is the weather in Lisbon?"
    return run_example(
        HERE,
        "weather",
        question,
        {
            "agent worker": [sys.executable, str(HERE / "worker.py")],
            "tidings worker": [TIDINGS, "worker", "--activities", "steps:activities"],
        },
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
