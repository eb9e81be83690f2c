"""Mixing with asyncio: coroutines await dhagas, dhagas wait on coroutines and futures."""

import asyncio

import dhaga


def blocking_lookup(key):
    """Plain blocking code (imagine a legacy client library)."""
    dhaga.sleep(0.01)
    value = dhaga.wait(async_fetch(key))  # a dhaga may wait on a coroutine...
    return value.upper()


async def async_fetch(key):
    await asyncio.sleep(0.01)
    return f"value-of-{key}"


@dhaga.green
def green_lookup(key):  # callable from async code: returns an awaitable dhaga
    return blocking_lookup(key)


async def main():
    # ...and a coroutine may await dhagas, many at once.
    results = await asyncio.gather(*(green_lookup(k) for k in ("a", "b", "c")))
    print("gathered:", results)
    print("direct:", await dhaga.spawn(blocking_lookup, "d"))


if __name__ == "__main__":
    asyncio.run(main())  # a plain asyncio program; uvloop works the same
