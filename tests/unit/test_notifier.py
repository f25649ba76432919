"""Keyed wake-ups: a change of one instance wakes its waiters and the global ones only."""

from __future__ import annotations

import asyncio

from dockyard.server.notifier import Notifier


async def _woken(token: asyncio.Event) -> bool:
    await Notifier().wait(token, 0.2)
    return token.is_set()


def test_a_keyed_bump_wakes_that_key_and_the_global_waiters_only() -> None:
    async def scenario() -> None:
        notifier = Notifier()
        notifier.bind(asyncio.get_running_loop())
        glob, mine, other = notifier.token(), notifier.token("a"), notifier.token("b")
        assert notifier.token("a") is mine  # waiters of one key share its event
        notifier.bump("a")
        assert await _woken(glob) and await _woken(mine)
        assert not await _woken(other)
        assert notifier.token("a") is not mine  # a fresh event for the next change
        notifier.bump()  # no key: everybody
        assert await _woken(other)

    asyncio.run(scenario())


def test_a_key_nobody_waits_on_is_not_kept() -> None:
    async def scenario() -> None:
        notifier = Notifier()
        notifier.bind(asyncio.get_running_loop())
        notifier.token("gone")  # the waiter dropped its token (timed out, returned)
        notifier.bump("other")
        await asyncio.sleep(0)
        assert "gone" not in notifier._keyed

    asyncio.run(scenario())


def test_closing_ends_every_wait_at_once_and_for_good() -> None:
    async def scenario() -> None:
        notifier = Notifier()
        notifier.bind(asyncio.get_running_loop())
        held = [asyncio.create_task(notifier.wait(notifier.token(key), 300))
                for key in (None, "a")]
        await asyncio.sleep(0.05)
        assert not any(t.done() for t in held) and not notifier.closing
        notifier.close_waiters()
        await asyncio.wait_for(asyncio.gather(*held), 2)  # not the 300 s
        assert notifier.closing
        await asyncio.wait_for(notifier.wait(notifier.token(), 300), 2)  # later ones too

    asyncio.run(scenario())
