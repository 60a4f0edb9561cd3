from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from redis.asyncio import Redis, RedisCluster
from redis.exceptions import RedisError

from hub.clock import Clock, utcnow
from hub.errors import (
    HoldsUnavailable,
    InvalidInput,
    SlotTaken,
    TooManyAddressHolds,
    TooManyHolds,
)

# Time is the hub's clock, passed in as ARGV "now" (ms), never Redis TIME: a hold is live while
# its expiry (its score in the doctor's index) is after now. The PX on the slot key only
# clears it away some time after it lapsed.
# One script takes a hold atomically: drop the patient's lapsed holds, refuse past the cap,
# refuse past the client address's cap, refuse a slot whose holder is live, set the slot key
# (PX), and index the hold by patient, doctor, expiry (the sweeper's queue) and address.
# The address index forgets a hold that lapsed (by score) or was released or booked (it left
# the expiry queue), so it counts live holds.
TAKE = """
local now_ms = tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
local cap = tonumber(ARGV[3])
if cap > 0 and redis.call('ZCARD', KEYS[2]) >= cap then return {-1, ''} end
local address_cap = tonumber(ARGV[5])
if address_cap > 0 then
    redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now_ms)
    for _, id in ipairs(redis.call('ZRANGE', KEYS[5], 0, -1)) do
        if not redis.call('ZSCORE', KEYS[4], id) then redis.call('ZREM', KEYS[5], id) end
    end
    if redis.call('ZCARD', KEYS[5]) >= address_cap then return {-2, ''} end
end
local current = redis.call('GET', KEYS[1])
if current then
    local expires_at = redis.call('ZSCORE', KEYS[3], current)
    if expires_at and tonumber(expires_at) > now_ms then return {0, current} end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local expires = now_ms + tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], expires, ARGV[1])
redis.call('ZADD', KEYS[3], expires, ARGV[1])
redis.call('ZADD', KEYS[4], expires, ARGV[1])
if address_cap > 0 then
    redis.call('ZADD', KEYS[5], expires, ARGV[1])
    redis.call('PEXPIRE', KEYS[5], ARGV[2])
end
return {1, tostring(expires)}
"""
# Only the holder's exact id deletes the slot key: a hold that lapsed and was taken by someone
# else is not released by its first owner. 1 only if the hold was still live.
RELEASE = """
local expires_at = redis.call('ZSCORE', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
if expires_at and tonumber(expires_at) > tonumber(ARGV[2]) then return 1 end
return 0
"""
# Claim lapsed holds: whoever removes an id from the expiry queue announces it, exactly once.
SWEEP = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 200)
for _, id in ipairs(due) do redis.call('ZREM', KEYS[1], id) end
return due
"""


class SlotHeld(SlotTaken):
    def __init__(self, detail: str, holder: Hold) -> None:
        super().__init__(detail)
        self.holder = holder


@dataclass(frozen=True, slots=True)
class Hold:
    """A patient's short claim on one slot. Its id names the slot, the patient and a secret."""

    doctor_id: int
    start: datetime
    patient_id: int
    token: str
    expires_at: datetime | None = None

    @property
    def id(self) -> str:
        return f"{self.doctor_id}-{int(self.start.timestamp())}-{self.patient_id}-{self.token}"

    @classmethod
    def parse(cls, hold_id: str) -> Hold:
        try:
            doctor, epoch, patient, token = hold_id.split("-")
            start = datetime.fromtimestamp(int(epoch), UTC)
            return cls(int(doctor), start, int(patient), token)
        except (ValueError, OverflowError, OSError) as exc:
            raise InvalidInput(
                "malformed hold id", [{"field": "hold_id", "message": "not a hold id"}]
            ) from exc

    @classmethod
    def new(cls, doctor_id: int, start: datetime, patient_id: int) -> Hold:
        return cls(doctor_id, start, patient_id, secrets.token_hex(8))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _ms(moment: float) -> datetime:
    return datetime.fromtimestamp(moment / 1000, UTC)


def _now_ms(clock: Clock) -> int:
    return int(clock().timestamp() * 1000)


def _crowded(cap: int) -> str:
    return f"at most {cap} holds at a time from one address, whichever accounts hold them"


class HoldStore(Protocol):
    async def take(
        self, hold: Hold, ttl_ms: int, cap: int, address: str | None = None, address_cap: int = 0
    ) -> Hold: ...

    async def holder(self, doctor_id: int, start: datetime) -> Hold | None: ...

    async def release(self, hold: Hold) -> bool: ...

    async def held(self, doctor_id: int) -> dict[datetime, Hold]: ...

    async def sweep(self) -> list[Hold]: ...


class RedisHolds:
    """Holds as Redis keys (SET NX PX + token-checked delete); every call gives up after
    `timeout` seconds with HoldsUnavailable, so a slow Redis never stalls a request.

    Every key carries the hash tag `{holds}`, so on a Redis Cluster they live in one hash slot
    and the scripts, which touch a slot key and three indexes at once, run atomically there.
    Holds are small and short-lived: one shard carries them easily."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        timeout: float,
        prefix: str = "hub:",
        clock: Clock = utcnow,
    ) -> None:
        self._redis = redis
        self._timeout = timeout
        self._clock = clock
        self._prefix = prefix + "{holds}:"
        self._take = redis.register_script(TAKE)
        self._release = redis.register_script(RELEASE)
        self._sweep = redis.register_script(SWEEP)

    def _keys(self, hold: Hold) -> list[str]:
        p = self._prefix
        return [
            f"{p}hold:{hold.doctor_id}:{int(hold.start.timestamp())}",
            f"{p}holds:patient:{hold.patient_id}",
            f"{p}holds:doctor:{hold.doctor_id}",
            f"{p}holds:expiry",
        ]

    async def _call(self, awaitable: Awaitable[Any]) -> Any:
        try:
            async with asyncio.timeout(self._timeout):
                return await awaitable
        except (RedisError, TimeoutError, OSError) as exc:
            raise HoldsUnavailable(f"holds are unavailable: {exc.__class__.__name__}") from exc

    async def take(
        self, hold: Hold, ttl_ms: int, cap: int, address: str | None = None, address_cap: int = 0
    ) -> Hold:
        """Claim the slot for `hold`'s patient, within `cap` live holds of that patient and
        `address_cap` of the client `address` (0: no cap); SlotHeld names the current holder."""
        if address is None:
            address_cap = 0
        keys = [*self._keys(hold), f"{self._prefix}holds:address:{address}"]
        args: list[str | int] = [hold.id, ttl_ms, cap, _now_ms(self._clock), address_cap]
        status, raw = await self._call(self._take(keys=keys, args=args))
        value = _text(raw)
        if status == -1:
            raise TooManyHolds(f"at most {cap} holds at a time")
        if status == -2:
            raise TooManyAddressHolds(_crowded(address_cap))
        if status == 0:
            raise SlotHeld("someone else is holding this slot", Hold.parse(value))
        return Hold(hold.doctor_id, hold.start, hold.patient_id, hold.token, _ms(int(value)))

    async def holder(self, doctor_id: int, start: datetime) -> Hold | None:
        key = f"{self._prefix}hold:{doctor_id}:{int(start.timestamp())}"
        value = await self._call(self._redis.get(key))
        if value is None:
            return None
        hold = Hold.parse(_text(value))
        score = await self._call(self._redis.zscore(self._keys(hold)[2], hold.id))
        if score is None or score <= _now_ms(self._clock):
            return None  # lapsed: the key outlives its hold until its PX runs out
        return Hold(hold.doctor_id, hold.start, hold.patient_id, hold.token, _ms(score))

    async def release(self, hold: Hold) -> bool:
        args: list[str | int] = [hold.id, _now_ms(self._clock)]
        return bool(await self._call(self._release(keys=self._keys(hold), args=args)))

    async def held(self, doctor_id: int) -> dict[datetime, Hold]:
        key = f"{self._prefix}holds:doctor:{doctor_id}"
        live = f"({_now_ms(self._clock)}"  # expiring after now
        rows = await self._call(self._redis.zrangebyscore(key, live, "+inf", withscores=True))
        holds = {}
        for member, score in rows:
            hold = Hold.parse(_text(member))
            holds[hold.start] = Hold(
                hold.doctor_id, hold.start, hold.patient_id, hold.token, _ms(score)
            )
        return holds

    async def sweep(self) -> list[Hold]:
        """The holds that lapsed since the last sweep by any process, each returned once."""
        expiry = f"{self._prefix}holds:expiry"
        due = await self._call(self._sweep(keys=[expiry], args=[_now_ms(self._clock)]))
        lapsed = []
        for member in due:
            hold = Hold.parse(_text(member))
            keys = self._keys(hold)
            await self._call(self._redis.zrem(keys[1], hold.id))
            await self._call(self._redis.zrem(keys[2], hold.id))
            lapsed.append(hold)
        return lapsed


class MemoryHolds:
    """The in-process twin of RedisHolds for the embedded default: same semantics."""

    def __init__(self, clock: Clock = utcnow) -> None:
        self._slots: dict[tuple[int, datetime], tuple[Hold, float]] = {}
        self._addresses: dict[str, str] = {}  # hold id -> the client address that took it
        self._clock = clock

    def _now(self) -> float:
        return self._clock().timestamp()

    def _live(self, key: tuple[int, datetime]) -> Hold | None:
        entry = self._slots.get(key)
        return entry[0] if entry is not None and entry[1] > self._now() else None

    async def take(
        self, hold: Hold, ttl_ms: int, cap: int, address: str | None = None, address_cap: int = 0
    ) -> Hold:
        now = self._now()
        mine = sum(
            1
            for h, until in self._slots.values()
            if h.patient_id == hold.patient_id and until > now
        )
        if cap > 0 and mine >= cap:
            raise TooManyHolds(f"at most {cap} holds at a time")
        counted = address is not None and address_cap > 0
        if counted:
            here = sum(
                1
                for h, until in self._slots.values()
                if self._addresses.get(h.id) == address and until > now
            )
            if here >= address_cap:
                raise TooManyAddressHolds(_crowded(address_cap))
        key = (hold.doctor_id, hold.start)
        current = self._live(key)
        if current is not None:
            raise SlotHeld("someone else is holding this slot", current)
        until = now + ttl_ms / 1000
        taken = Hold(hold.doctor_id, hold.start, hold.patient_id, hold.token, _ms(until * 1000))
        replaced = self._slots.get(key)
        if replaced is not None:
            self._addresses.pop(replaced[0].id, None)
        self._slots[key] = (taken, until)
        if counted and address is not None:
            self._addresses[taken.id] = address
        return taken

    async def holder(self, doctor_id: int, start: datetime) -> Hold | None:
        return self._live((doctor_id, start))

    async def release(self, hold: Hold) -> bool:
        key = (hold.doctor_id, hold.start)
        entry = self._slots.get(key)
        if entry is None or entry[0].id != hold.id:
            return False
        del self._slots[key]
        self._addresses.pop(hold.id, None)
        return entry[1] > self._now()

    async def held(self, doctor_id: int) -> dict[datetime, Hold]:
        now = self._now()
        return {
            start: hold
            for (doctor, start), (hold, until) in self._slots.items()
            if doctor == doctor_id and until > now
        }

    async def sweep(self) -> list[Hold]:
        now = self._now()
        lapsed = [(key, hold) for key, (hold, until) in self._slots.items() if until <= now]
        for key, hold in lapsed:
            del self._slots[key]
            self._addresses.pop(hold.id, None)
        return [hold for _, hold in lapsed]
