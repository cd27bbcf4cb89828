"""polling.wait_until: what it returns, when it gives up, and what its failure says."""

from __future__ import annotations

import time

import pytest

from polling import wait_until


def test_returns_the_first_truthy_value() -> None:
    values = iter([None, [], 0, {"run": 7}, {"run": 8}])
    assert wait_until(lambda: next(values), "a run", 5, poll=0.001) == {"run": 7}


def test_times_out_naming_what_and_the_last_value_with_the_diagnosis() -> None:
    calls: list[float] = []

    def never() -> list[int]:
        calls.append(time.monotonic())
        return []

    started = time.monotonic()
    with pytest.raises(AssertionError) as failure:
        wait_until(never, "three results", 0.3, poll=0.05, diagnose=lambda: "log tail: broker down")
    message = str(failure.value)
    assert message.startswith("waited 0.3 s for three results; last value: []") and message.endswith("log tail: broker down")
    assert calls[-1] - started > 0.3, "a last look after the deadline"
    assert 2 <= len(calls) < 20, calls  # polled, not spun


def test_retries_the_named_exceptions_and_reports_the_last_one() -> None:
    attempts = iter([ConnectionRefusedError("refused"), ConnectionResetError("reset"), "up"])

    def connect() -> str:
        outcome = next(attempts)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert wait_until(connect, "the server", 5, poll=0.001, retry_on=(ConnectionError,)) == "up"

    def refused() -> str:
        raise ConnectionRefusedError("still refused")

    with pytest.raises(TimeoutError, match=r"for the server; last error: ConnectionRefusedError\('still refused'\)") \
            as failure:
        wait_until(refused, "the server", 0.05, poll=0.01, retry_on=(ConnectionError,), error=TimeoutError)
    assert isinstance(failure.value.__cause__, ConnectionRefusedError)


def test_any_other_exception_ends_the_wait_at_once() -> None:
    calls = []

    def exited() -> bool:
        calls.append(1)
        raise RuntimeError("the process exited with 1")

    with pytest.raises(RuntimeError, match="exited with 1"):
        wait_until(exited, "the process", 30, poll=0.01, retry_on=(ConnectionError,))
    assert len(calls) == 1


def test_a_long_last_value_is_shortened() -> None:
    class Frames:
        """Falsy (no frame yet) with a long repr, like a big empty table."""

        def __bool__(self) -> bool:
            return False

        def __repr__(self) -> str:
            return "Frames(" + "column, " * 500 + ")"

    with pytest.raises(AssertionError) as failure:
        wait_until(Frames, "a frame", 0.0)
    message = str(failure.value)
    assert "last value: Frames(column, " in message and "... (4008 characters)" in message and len(message) < 700
