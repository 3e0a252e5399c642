"""A headless browser for the dashboard's tests: Debian's ``chromium`` driven by
``playwright-core`` from npm.

Neither downloads a browser build of its own (that fails here): chromium comes
from apt, and ``playwright-core`` (unlike ``playwright``) ships no browser and
runs no install script. Both steps are idempotent and take milliseconds when
everything is present, so every test session may call :func:`ensure_browser`.

    python -m infra.browser      # installs what is missing, prints the paths
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from infra.errors import StackError
from infra.install import ensure_apt

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
PLAYWRIGHT = "playwright-core"

# Chromium must not reach for the network (it is closed here) nor for a GPU.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

_NPM_TIMEOUT = 300


class BrowserUnavailable(StackError):
    """Chromium or playwright-core is missing and could not be installed."""


@dataclass(frozen=True)
class Browser:
    chromium: Path
    node: Path
    # Where node_modules/playwright-core lives (the repo root). ESM imports ignore
    # NODE_PATH: scripts that import it must live below this folder.
    root: Path

    def env(self) -> dict[str, str]:
        """Variables the Node scripts read to launch the browser."""
        return {
            "TIDINGS_CHROMIUM": str(self.chromium),
            "TIDINGS_CHROMIUM_ARGS": json.dumps(list(CHROMIUM_ARGS)),
        }


def _quiet(message: str) -> None:
    del message


def find_chromium() -> Path | None:
    for candidate in CHROMIUM_CANDIDATES:
        if os.access(candidate, os.X_OK):
            return Path(candidate)
    found = shutil.which("chromium")
    return Path(found) if found else None


def ensure_chromium(say: Callable[[str], None] = _quiet) -> Path:
    """Debian's chromium, installed with apt if missing (needs root)."""
    found = find_chromium()
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise BrowserUnavailable("chromium not found; install it: apt-get install -y chromium")
    try:
        ensure_apt("chromium", "chromium", say, recommends=False)
    except StackError as exc:
        raise BrowserUnavailable(exc.message) from None
    found = find_chromium()
    if found is None:
        raise BrowserUnavailable("apt installed chromium but no chromium binary was found")
    return found


def locked_version(root: Path = ROOT) -> str | None:
    """The playwright-core version package-lock.json pins."""
    try:
        lock = json.loads((root / "package-lock.json").read_text())
    except (OSError, ValueError):
        return None
    entry = lock.get("packages", {}).get(f"node_modules/{PLAYWRIGHT}", {})
    version = entry.get("version")
    return version if isinstance(version, str) else None


def installed_version(root: Path = ROOT) -> str | None:
    try:
        manifest = json.loads((root / "node_modules" / PLAYWRIGHT / "package.json").read_text())
    except (OSError, ValueError):
        return None
    version = manifest.get("version")
    return version if isinstance(version, str) else None


def ensure_playwright(root: Path = ROOT, say: Callable[[str], None] = _quiet) -> Path:
    """``node_modules/playwright-core`` at the locked version (``npm ci``), or any
    version when there is no lock file (``npm install``). Returns node's path."""
    node = shutil.which("node")
    npm = shutil.which("npm")
    if node is None or npm is None:
        raise BrowserUnavailable("node and npm are needed: apt-get install -y nodejs npm")
    wanted = locked_version(root)
    have = installed_version(root)
    if have is not None and (wanted is None or have == wanted):
        return Path(node)
    command = [npm, "ci"] if wanted is not None else [npm, "install"]
    command += ["--no-audit", "--no-fund", "--loglevel=error"]
    say(f"{' '.join(command[1:2])}: {PLAYWRIGHT} {wanted or '(latest)'}")
    env = {**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
    if _run(command, env, _NPM_TIMEOUT, cwd=root) != 0:
        raise BrowserUnavailable(f"{' '.join(command[:2])} failed in {root}")
    if installed_version(root) is None:
        raise BrowserUnavailable(f"{PLAYWRIGHT} is still missing after npm in {root}")
    return Path(node)


def ensure_browser(root: Path = ROOT, say: Callable[[str], None] = _quiet) -> Browser:
    """Chromium and playwright-core, installing what is missing. Safe to call
    from concurrent processes: installs are serialised by a lock file."""
    lock_path = Path(tempfile.gettempdir()) / "tidings-browser.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        chromium = ensure_chromium(say)
        node = ensure_playwright(root, say)
    return Browser(chromium=chromium, node=node, root=root)


def _run(command: list[str], env: dict[str, str], timeout: float, cwd: Path | None = None) -> int:
    try:
        done = subprocess.run(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"{command[0]}: {exc}", file=sys.stderr)
        return 1
    if done.returncode != 0:
        tail = done.stdout.decode(errors="replace")[-2000:]
        print(f"{' '.join(command)} failed ({done.returncode}):\n{tail}", file=sys.stderr)
    return done.returncode


def main() -> int:
    def say(message: str) -> None:
        print(f"[browser] {message}", file=sys.stderr)

    try:
        browser = ensure_browser(say=say)
    except BrowserUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"chromium: {browser.chromium}")
    print(f"node: {browser.node}")
    print(f"{PLAYWRIGHT}: {installed_version(browser.root)} in {browser.root / 'node_modules'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
