"""A client-load process: opens N WebSockets, reports READY, then obeys one
JSON command per stdin line, printing one JSON line per answer on stdout, so
the driver in another process reads figures without sharing a CPU-heavy
event loop with the server or the clients.

Commands: ``{"cmd": "measure", "expect": E, "timeout": T, "since_ns": S}``
waits until every socket has E more messages (or T seconds pass) and reports
counts, the last arrival time and the latency samples of messages sent at or
after S (monotonic ns: CLOCK_MONOTONIC is system-wide). With ``--tally``
(O1) every socket's tokens are tallied (bench/tally.py) and the command may
add ``"until": "ended"`` (wait until every socket is closed, not until each
has E messages), ``"cut_ns"`` (when to note each socket's tokens, for how far
behind it was then), and ``"start_ns"``/``"rate"`` (the emit schedule); the
answer then lists each socket. ``{"cmd": "close"}`` closes every socket; end
of input exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.harness import raise_fd_limit, run_fast
from bench.tally import Tally
from bench.wsclient import CountingClient, connect

T_NS = re.compile(rb'"t_ns":(\d+)')


def say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


class Load:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.clients: list[CountingClient] = []
        self.tallies: list[Tally] = []  # with --tally, one per client, in the same order
        self.failed = 0
        self.errors: dict[str, int] = {}
        self.samples: list[int] = []
        self.since_ns = 1 << 62  # no sampling until a measure command says from when
        with open(args.targets) as file:
            self.targets: list[list[str | None]] = json.load(file)

    def sample(self, buf: bytes, start: int, end: int, now_ns: int) -> None:
        if len(self.samples) >= self.args.max_samples:
            return
        for match in T_NS.finditer(buf, start, end):
            sent = int(match.group(1))
            if sent >= self.since_ns:
                self.samples.append(now_ns - sent)

    async def open_all(self) -> None:
        args = self.args
        headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
        targets: list[list[str | None]] = self.targets
        semaphore = asyncio.Semaphore(args.connect_concurrency)
        options = {
            "ready_marker": args.ready_marker.encode() if args.ready_marker else None,
            "empty_ping": args.empty_ping,
        }
        on_payload = self.sample if args.latency else None

        async def open_one(i: int) -> None:
            path, hello = targets[(args.offset + i) % len(targets)]
            tally = Tally() if args.tally else None
            async with semaphore:
                try:
                    client = await connect(
                        args.host,
                        args.port,
                        str(path),
                        headers,
                        self._tallying(tally) if tally is not None else on_payload,
                        open_timeout=args.open_timeout,
                        hello=hello,
                        **options,
                    )
                    self.clients.append(client)
                    if tally is not None:
                        self.tallies.append(tally)
                except (OSError, ConnectionError, TimeoutError) as exc:
                    self.failed += 1
                    key = type(exc).__name__ + ": " + str(exc)[:60]
                    self.errors[key] = self.errors.get(key, 0) + 1

        start_ns = time.monotonic_ns()
        await asyncio.gather(*(open_one(i) for i in range(args.clients)))
        say(
            phase="ready",
            clients=len(self.clients),
            failed=self.failed,
            errors=self.errors,
            start_ns=start_ns,
            ready_ns=time.monotonic_ns(),
        )

    def _tallying(self, tally: Tally) -> Callable[[bytes, int, int, int], None]:
        sample = self.sample if self.args.latency else None

        def see(buf: bytes, start: int, end: int, now_ns: int) -> None:
            tally.see(buf, start, end, now_ns)
            if sample is not None:
                sample(buf, start, end, now_ns)

        return see

    async def measure(self, expect: int, limit_s: float, since_ns: int, **tally: Any) -> None:
        self.samples = []
        self.since_ns = since_ns
        until_ended = tally.get("until") == "ended"
        cut_ns = int(tally.get("cut_ns") or 0)
        for each in self.tallies:
            each.schedule(int(tally.get("start_ns") or 0), float(tally.get("rate") or 0))
        at_cut: list[int] | None = None
        base = [c.messages for c in self.clients]
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if at_cut is None and cut_ns and time.monotonic_ns() >= cut_ns:
                at_cut = [t.kept for t in self.tallies]
            if not until_ended and all(
                c.messages - b >= expect for c, b in zip(self.clients, base, strict=True)
            ):
                break
            if all(c.closed.done() for c in self.clients):
                break
            await asyncio.sleep(0.005 if not until_ended else 0.05)
        if at_cut is None:
            at_cut = [t.kept for t in self.tallies]
        got = [c.messages - b for c, b in zip(self.clients, base, strict=True)]
        # Per socket only with --tally (O1); other workloads keep the totals.
        sockets = (
            [
                {
                    **t.report(),
                    "closed": c.closed.done(),
                    "close_code": c.close_code,
                    "kept_at_cut": cut,
                }
                for t, c, cut in zip(self.tallies, self.clients, at_cut, strict=True)
            ]
            if self.tallies
            else []
        )
        say(
            phase="done",
            clients=len(self.clients),
            messages=sum(got),
            complete=sum(1 for g in got if g >= expect),
            last_ns=max((c.last_ns for c in self.clients), default=0),
            latencies_ns=self.samples,
            closed=sum(1 for c in self.clients if c.closed.done()),
            close_codes=sorted({c.close_code for c in self.clients if c.close_code is not None}),
            sockets=sockets,
        )
        self.since_ns = 1 << 62

    def close(self) -> None:
        for client in self.clients:
            client.close()


async def run(args: argparse.Namespace) -> None:
    load = Load(args)
    await load.open_all()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        if command["cmd"] == "measure":
            await load.measure(
                int(command["expect"]),
                float(command["timeout"]),
                int(command.get("since_ns", 0)),
                until=command.get("until"),
                cut_ns=command.get("cut_ns"),
                start_ns=command.get("start_ns"),
                rate=command.get("rate"),
            )
        elif command["cmd"] == "close":
            load.close()
            await asyncio.sleep(0.2)
            say(phase="closed")
    load.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument(
        "--targets", required=True, help="a JSON file [[path, hello-or-null], ...]: round-robin"
    )
    parser.add_argument("--offset", type=int, default=0, help="first target index")
    parser.add_argument("--clients", type=int, default=500)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--ready-marker", default="")
    parser.add_argument("--empty-ping", action="store_true")
    parser.add_argument("--latency", action="store_true")
    parser.add_argument("--tally", action="store_true", help="tally each socket's tokens (O1)")
    parser.add_argument("--max-samples", type=int, default=300_000)
    parser.add_argument("--connect-concurrency", type=int, default=200)
    parser.add_argument("--open-timeout", type=float, default=60.0)
    args = parser.parse_args()
    raise_fd_limit()
    run_fast(run(args))


if __name__ == "__main__":
    main()
