"""The one way this code runs Lua in Redis: ``LuaScript``, by its SHA.

A script is sent whole only when Redis has lost it (a restart, ``SCRIPT FLUSH``); each script
names every key it touches in ``KEYS`` (the contract tests in tests/api/test_lua_scripts.py).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError


class LuaScript:
    def __init__(self, redis: Redis, source: str) -> None:
        self._redis = redis
        self._script: AsyncScript = redis.register_script(source)

    @classmethod
    def of_file(cls, redis: Redis, name: str) -> LuaScript:
        """One of the ``*.lua`` files of this package."""
        return cls(redis, resources.files(__package__).joinpath(name).read_text())

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        """Run the script once; its reply (an error reply raises)."""
        command = ("EVALSHA", self._script.sha, len(keys), *keys, *args)
        try:
            return await self._execute(*command)
        except NoScriptError:  # nothing ran: safe to run again
            await self._load()
            return await self._execute("EVALSHA", self._script.sha, *command[2:])

    async def each(self, calls: list[tuple[list[str], list[Any]]]) -> list[Any]:
        """Run the script once per (keys, args), pipelined: one round trip, the replies (error
        replies in their place, not raised) in order."""
        if len(calls) == 1:  # one call (an HTTP request): no pipeline to set up
            keys, args = calls[0]
            try:
                return [await self(keys, args)]
            except ResponseError as exc:
                return [exc]
        replies: list[Any] = [None] * len(calls)
        todo = list(range(len(calls)))
        for attempt in range(2):
            if not todo:
                break
            async with self._redis.pipeline(transaction=False) as pipe:
                for index in todo:
                    keys, args = calls[index]
                    pipe.evalsha(self._script.sha, len(keys), *keys, *args)
                answers = await pipe.execute(raise_on_error=False)
            missing = []
            for index, answer in zip(todo, answers, strict=True):
                replies[index] = answer
                if isinstance(answer, NoScriptError) and attempt == 0:
                    missing.append(index)  # nothing ran: safe to run again
            if missing:
                await self._load()
            todo = missing
        return replies

    async def _execute(self, *command: Any) -> Any:
        # execute_command, not the script object's __call__: see docs/performance.md.
        return await self._redis.execute_command(*command)  # type: ignore[no-untyped-call]

    async def _load(self) -> None:
        self._script.sha = await self._redis.script_load(self._script.script)
