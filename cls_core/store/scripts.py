"""The one way this code runs Lua in Redis: ``LuaScript``, by its SHA.

A script is sent whole only when Redis has lost it (a restart, ``SCRIPT FLUSH``); each script
names every key it touches in ``KEYS`` (the contract tests in tests/api/test_lua_scripts.py).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError


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

    async def _execute(self, *command: Any) -> Any:
        # execute_command, not the script object's __call__: see docs/performance.md.
        return await self._redis.execute_command(*command)  # type: ignore[no-untyped-call]

    async def _load(self) -> None:
        self._script.sha = await self._redis.script_load(self._script.script)
