"""Kill and timeouts: stop a dhaga at its blocking point; bound any block of blocking code."""

import dhaga
from dhaga.sync import Event


def worker(log):
    try:
        Event().wait()  # blocks forever...
    except dhaga.Killed:
        log.append("worker: killed, cleaning up")
        raise
    finally:
        log.append("worker: finally ran")


def main():
    log = []
    d = dhaga.spawn(worker, log)
    dhaga.sleep(0)  # let it start and block
    d.kill()  # raises Killed inside it, waits for it to finish
    print(*log, sep="\n")
    print("killed:", d.killed())

    # A dhaga that never started never runs.
    never = dhaga.spawn(print, "this is never printed")
    never.kill()

    # timeout(): nested blocks each raise their own Timeout instance.
    with dhaga.timeout(5) as outer:
        try:
            with dhaga.timeout(0.01) as inner:
                dhaga.sleep(10)
        except dhaga.Timeout as e:
            print("inner expired:", e is inner.exception, "- outer expired:", outer.expired)

    # Every blocking call takes timeout= too.
    try:
        Event().wait(timeout=0.01) or print("Event.wait(timeout) returned False")
        dhaga.spawn(Event().wait).result(timeout=0.01)
    except dhaga.Timeout:
        print("result(timeout=0.01) raised Timeout (a TimeoutError)")


if __name__ == "__main__":
    dhaga.run(main)
