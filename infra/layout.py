"""The state folder of one local stack: data, logs and PID files, claimed by a marker.

``up`` writes into this folder and ``down`` signals the PIDs recorded in it, so it
must be ours: a folder that holds files but no marker was made by someone else
(or is the wrong path) and is refused rather than written over.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from infra.errors import StackError

MARKER = ".tidings-stack"
_MARKER_BODY = {"tidings_stack": 1}


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    def data(self, service: str) -> Path:
        return self.root / "data" / service

    def pid_file(self, service: str) -> Path:
        return self.run_dir / f"{service}.json"

    def log(self, service: str) -> Path:
        return self.logs_dir / f"{service}.log"

    def recorded_services(self) -> list[str]:
        if not self.run_dir.is_dir():
            return []
        return sorted(path.stem for path in self.run_dir.glob("*.json"))

    def is_claimed(self) -> bool:
        try:
            return bool(json.loads((self.root / MARKER).read_text()) == _MARKER_BODY)
        except (OSError, ValueError):
            return False

    def claim(self) -> None:
        """Create the folder (or adopt an empty one) for us, or refuse a foreign one."""
        var = "TIDINGS_STACK_STATE_DIR"
        if self.root.exists() and not self.root.is_dir():
            raise StackError(f"{self.root} is a file, not a folder; set {var} to a folder path")
        if self.is_claimed():
            return
        if self.root.is_dir() and any(self.root.iterdir()):
            raise StackError(
                f"{self.root} holds files that tidings did not create (no valid {MARKER}); "
                f"set {var} to a new folder, or empty this one"
            )
        try:
            for folder in (self.root, self.run_dir, self.logs_dir):
                folder.mkdir(parents=True, exist_ok=True)
            (self.root / MARKER).write_text(json.dumps(_MARKER_BODY))
        except OSError as exc:
            raise StackError(
                f"cannot create the state folder {self.root} ({exc.strerror}); set {var}"
            ) from None

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """One ``up`` or ``down`` at a time: two would overwrite each other's PID files.

        Call after :meth:`claim`. The kernel drops the lock if the holder dies.
        """
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / ".lock").open("w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StackError(
                    f"another `tidings up` or `tidings down` is working on {self.root}; "
                    "wait for it to finish, then retry"
                ) from None
            yield

    def log_tail(self, service: str, lines: int = 1) -> str:
        try:
            text = self.log(service).read_text(errors="replace")
        except OSError:
            return ""
        kept = [line.strip() for line in text.splitlines() if line.strip()]
        return " | ".join(kept[-lines:])
