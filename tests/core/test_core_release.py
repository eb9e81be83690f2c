"""A finished dhaga keeps nothing alive: idle workers drop its frames, whatever way it ended."""

from __future__ import annotations

import gc
import weakref

import pytest

import dhaga
from dhaga import Killed, Timeout
from dhaga.testing import settle


class Payload:
    """Something a dhaga holds in a local variable; a weak reference tells when it is freed."""


def _holding(refs: list, body) -> None:
    payload = Payload()
    refs.append(weakref.ref(payload))
    body()


def _sleep_forever() -> None:
    dhaga.sleep(3600)


def _fail() -> None:
    raise ValueError("boom")


def _time_out() -> None:
    with dhaga.timeout(0.001):
        dhaga.sleep(3600)


@pytest.mark.parametrize("how", ["killed", "failed", "timed out"])
def test_locals_of_a_finished_dhaga_die_with_it(each_loop, how):
    refs: list = []
    body = {"killed": _sleep_forever, "failed": _fail, "timed out": _time_out}[how]
    ds = [dhaga.spawn(_holding, refs, body) for _ in range(20)]
    settle()
    if how == "killed":
        for d in ds:
            d.kill()
    expected = {"killed": Killed, "failed": ValueError, "timed out": Timeout}[how]
    for d in ds:
        assert isinstance(d.exception(timeout=10), expected)
    del ds, d
    settle()  # the workers that ran them are idle now, waiting for the next dhaga
    gc.collect()
    assert len(refs) == 20
    alive = [r for r in refs if r() is not None]
    assert alive == [], f"{len(alive)} of 20 {how} dhagas' locals outlived them"


def test_a_failed_dhagas_result_still_holds_its_traceback_while_the_handle_lives():
    refs: list = []
    d = dhaga.spawn(_holding, refs, _fail)
    exc = d.exception()
    gc.collect()
    assert refs[0]() is not None  # the handle's exception keeps its traceback, as asked
    assert exc.__traceback__ is not None
    del d, exc
    gc.collect()
    assert refs[0]() is None


def test_a_dhaga_killed_before_it_started_is_not_kept_by_the_worker_that_skipped_it():
    refs: list = []
    later: list = []

    def first() -> None:
        later[0].kill(block=False)  # still in the run queue: the worker skips it

    d1 = dhaga.spawn(first)
    later.append(dhaga.spawn(_holding, refs, _fail))
    refs.append(weakref.ref(later[0]))
    d1.join()
    assert later[0].killed()
    later.clear()
    settle()
    gc.collect()
    assert refs[0]() is None
