"""The retry policy, with a fake clock: no server, no real sleeping."""

from __future__ import annotations

import logging

import pytest

from alicefs.backends.retry import backoff_delay, call_with_retry, describe_error


class Transient(Exception):
    pass


class Permanent(Exception):
    pass


class FakeTime:
    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def failing(times: int, exc: type[Exception] = Transient, result: str = "ok"):
    calls = []

    def fn():
        calls.append(1)
        if len(calls) <= times:
            raise exc(f"failure {len(calls)}")
        return result

    return fn, calls


def run(fn, fake: FakeTime, deadline: float = 10.0, rand=lambda: 1.0, **kwargs):
    return call_with_retry(fn, deadline=deadline,
                           is_transient=lambda e: isinstance(e, Transient),
                           sleep=fake.sleep, clock=fake.clock, rand=rand, **kwargs)


def test_success_needs_no_sleep():
    fake = FakeTime()
    fn, calls = failing(0)
    assert run(fn, fake) == "ok"
    assert calls == [1] and fake.sleeps == []


def test_transient_failures_are_retried_with_exponential_backoff():
    fake = FakeTime()
    fn, calls = failing(3)
    assert run(fn, fake, base=0.5, cap=100) == "ok"
    assert len(calls) == 4
    assert fake.sleeps == [0.5, 1.0, 2.0]  # rand() == 1: the ceiling of each full-jitter draw


def test_backoff_is_capped_and_jittered():
    assert backoff_delay(30, base=0.1, cap=8.0, rand=lambda: 1.0) == 8.0
    assert backoff_delay(1000, base=0.1, cap=8.0, rand=lambda: 1.0) == 8.0  # no overflow
    assert backoff_delay(3, base=0.1, cap=8.0, rand=lambda: 0.0) == 0.0
    assert backoff_delay(3, base=0.1, cap=8.0, rand=lambda: 0.5) == pytest.approx(0.2)


def test_permanent_errors_are_not_retried():
    fake = FakeTime()
    fn, calls = failing(5, Permanent)
    with pytest.raises(Permanent):
        run(fn, fake)
    assert calls == [1] and fake.sleeps == []


def test_deadline_bounds_the_whole_call():
    fake = FakeTime()
    fn, calls = failing(1000)
    with pytest.raises(Transient, match="failure"):
        run(fn, fake, deadline=5.0, base=0.5, cap=2.0)
    assert sum(fake.sleeps) <= 5.0
    assert fake.now - 100.0 <= 5.0
    # 0.5 + 1 + 2 = 3.5, then another 2 would end at 5.5 > 5: give up after 4 attempts.
    assert len(calls) == 4


def test_zero_deadline_means_one_attempt():
    fake = FakeTime()
    fn, calls = failing(1)
    with pytest.raises(Transient):
        run(fn, fake, deadline=0.0)
    assert calls == [1]


def test_keyboard_interrupt_is_never_retried():
    fake = FakeTime()
    calls = []

    def fn():
        calls.append(1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        call_with_retry(fn, deadline=10, is_transient=lambda e: True, sleep=fake.sleep,
                        clock=fake.clock)
    assert calls == [1]


def test_retries_are_logged_with_the_describer(caplog):
    caplog.set_level(logging.INFO, logger="alicefs.backends.retry")
    fake = FakeTime()
    fn, _ = failing(1)
    run(fn, fake, what="loc: read 'a'", describe=lambda e: "described")
    assert "loc: read 'a'" in caplog.text and "described" in caplog.text
    assert "failure 1" not in caplog.text


def test_describe_error_is_one_bounded_line():
    text = describe_error(ValueError("a\nb  " + "x" * 1000), limit=50)
    assert text.startswith("ValueError: a b ")
    assert "\n" not in text and len(text) < 70
    assert describe_error(ValueError()) == "ValueError"
