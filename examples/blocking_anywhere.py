"""Where blocking is allowed: in a dhaga, at top level, in a worker thread — not on the loop."""

import asyncio
import threading

import dhaga


def slow_double(x):
    dhaga.sleep(0.01)
    return 2 * x


# 1. Top level of a plain script: the call drives this thread's loop until it can return.
d = dhaga.spawn(slow_double, 1)
print("top level:", d.result())

# 2. Inside a dhaga.
print("in a dhaga:", dhaga.run(lambda: slow_double(2)))

# 3. A worker thread has its own scheduler and loop.
out = []
t = threading.Thread(target=lambda: out.append(dhaga.run(slow_double, 3)))
t.start()
t.join()
print("worker thread:", out[0])


# 4. A coroutine on the loop must not block it: BlockingError says what to do instead.
async def coroutine():
    try:
        dhaga.sleep(0.01)
    except dhaga.BlockingError as e:
        print("in a coroutine: BlockingError:", str(e).split(";")[0])
    return await dhaga.spawn(slow_double, 4)  # the right way: run it in a dhaga


print("awaited from a coroutine:", dhaga.wait(coroutine()))
print("plain asyncio program:", asyncio.run(coroutine()))
