"""Stream sessions in Redis: what a resume token points at.

A session records which run and partition it follows and ``next``: the first
offset the client has not acked. The key expires with the token's TTL and is
refreshed on every write, so abandoned sessions clean themselves up. Redis is
the only state a gateway keeps beyond a socket, which is what lets a client
resume on any replica after this one is killed.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from .batching import Batcher

_PREFIX = "tidings:stream:session:"

# Acks from two sockets of one session may race; ``next`` must only move forward.
_ADVANCE = """
local current = redis.call('HGET', KEYS[1], 'next')
if not current then return 0 end
if tonumber(ARGV[1]) > tonumber(current) then
  redis.call('HSET', KEYS[1], 'next', ARGV[1])
end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# The latest acks of many sessions in one command (``acks.py``); one 0/1 per
# key, as _ADVANCE. ARGV: ttl, then each key's next offset.
_ADVANCE_MANY = """
local alive = {}
for i, key in ipairs(KEYS) do
  local current = redis.call('HGET', key, 'next')
  if current then
    if tonumber(ARGV[i + 1]) > tonumber(current) then
      redis.call('HSET', key, 'next', ARGV[i + 1])
    end
    redis.call('EXPIRE', key, ARGV[1])
    alive[i] = 1
  else
    alive[i] = 0
  end
end
return alive
"""

# A batch of new sessions in one command (a script runs atomically): none is
# left without its expiry, and Redis parses one request, not 2N + 2.
# ARGV: ttl, then tenant, run, partition, next for each key in turn.
_CREATE = """
for i, key in ipairs(KEYS) do
  local at = 2 + (i - 1) * 4
  redis.call('HSET', key, 'tenant', ARGV[at], 'run', ARGV[at + 1],
             'partition', ARGV[at + 2], 'next', ARGV[at + 3])
  redis.call('EXPIRE', key, ARGV[1])
end
return #KEYS
"""


@dataclass(frozen=True, slots=True)
class Session:
    sid: str
    tenant: str
    run_id: str
    partition: int
    next_offset: int


class SessionStore:
    def __init__(self, redis: Redis, *, ttl_seconds: int) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self._advance = redis.register_script(_ADVANCE)
        self._create_many = redis.register_script(_CREATE)
        self._advance_many = redis.register_script(_ADVANCE_MANY)
        # Sockets opening together write their sessions together.
        self._creating: Batcher[Session, None] = Batcher(self._create, max_batch=500)

    async def create(self, session: Session) -> None:
        await self._creating.ask(session)

    async def _create(self, sessions: list[Session]) -> dict[Session, None]:
        args: list[str | int] = [self._ttl]
        for s in sessions:
            args += [s.tenant, s.run_id, s.partition, s.next_offset]
        await self._create_many(keys=[_PREFIX + s.sid for s in sessions], args=args)
        return dict.fromkeys(sessions)

    async def load(self, sid: str) -> Session | None:
        raw = await self._redis.hgetall(_PREFIX + sid)
        if not raw:
            return None
        fields = {_text(k): _text(v) for k, v in raw.items()}
        try:
            return Session(
                sid, fields["tenant"], fields["run"], int(fields["partition"]), int(fields["next"])
            )
        except (KeyError, ValueError):
            return None

    async def advance(self, sid: str, next_offset: int) -> bool:
        """Record that everything before ``next_offset`` is acked; False if the
        session has expired meanwhile."""
        done = await self._advance(keys=[_PREFIX + sid], args=[next_offset, self._ttl])
        return bool(done)

    async def advance_many(self, nexts: dict[str, int]) -> dict[str, bool]:
        """:meth:`advance` for many sessions in one round trip."""
        sids = list(nexts)
        alive = await self._advance_many(
            keys=[_PREFIX + sid for sid in sids], args=[self._ttl, *(nexts[sid] for sid in sids)]
        )
        return {sid: bool(flag) for sid, flag in zip(sids, alive, strict=True)}

    async def touch(self, sid: str) -> None:
        await self._redis.expire(_PREFIX + sid, self._ttl)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
