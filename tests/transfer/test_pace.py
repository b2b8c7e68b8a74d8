"""The bandwidth cap: pure token-bucket arithmetic on a fake clock."""

from __future__ import annotations

import io

import pytest

from alicefs.transfer.pace import PacedReader, Pacer


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.now += seconds


def test_a_paced_reader_averages_the_cap():
    clock = FakeClock()
    pacer = Pacer(1_000_000, clock=clock, sleep=clock.sleep)
    reader = PacedReader(io.BytesIO(bytes(10_000_000)), pacer)
    total = 0
    while chunk := reader.read(64 * 1024):
        total += len(chunk)
    assert total == 10_000_000
    # Everything beyond the first quarter second's burst waits its turn.
    assert clock.now == pytest.approx(9.75, abs=0.07)


def test_idle_time_does_not_bank_more_than_a_burst():
    clock = FakeClock()
    pacer = Pacer(1_000_000, clock=clock, sleep=clock.sleep)
    clock.now = 3600.0  # an hour idle
    pacer.take(2_000_000)
    assert clock.slept == pytest.approx(1.75)


def test_a_cap_of_zero_is_refused():
    with pytest.raises(ValueError):
        Pacer(0)
