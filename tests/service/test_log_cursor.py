"""A log follower's place: every line once and whole, across a retry, a reconnect, and the change
from Ray's log to the tail kept when the attempt ended (the tail is cut as the control plane cuts it)."""

from __future__ import annotations

from control.finishing import log_tail
from service.api.log_cursor import LogCursor


def lines_of(events: list[str]) -> list[str]:
    return [event.split("data: ", 1)[1].rstrip("\n") for event in events]


def test_the_kept_tail_goes_on_where_rays_log_stopped():
    running = "".join(f"step {i}\n" for i in range(400))
    cursor = LogCursor()
    assert len(lines_of(cursor.events(1, running + "step 4", "ray", finished=False))) == 400  # not the half line
    ended = running + "step 400\nfinal line A\nfinal line B\n"
    kept = log_tail(ended)  # Ray has forgotten the execution: the last 300 lines
    assert lines_of(cursor.events(1, kept, "tail", finished=True)) == ["step 400", "final line A", "final line B"]
    assert cursor.events(1, kept, "tail", finished=True) == []


def test_a_reconnect_goes_on_from_the_last_line_received_and_a_retry_from_its_first():
    first = LogCursor()
    events = first.events(1, "a\nb\n", "ray", finished=False)
    last_id = events[-1].split("\n", 1)[0].removeprefix("id: ")
    again = LogCursor.resumed(last_id)
    assert lines_of(again.events(1, "a\nb\nc\n", "ray", finished=False)) == ["c"]
    assert lines_of(again.events(2, "resumed\n", "ray", finished=False)) == ["[attempt 2]", "resumed"]
    assert LogCursor.resumed("garbage").attempt is None


def test_no_log_to_read_now_sends_nothing_and_loses_no_place():
    cursor = LogCursor()
    cursor.events(1, "a\n", "ray", finished=False)
    assert cursor.events(1, "", None, finished=False) == []  # Ray busy, no tail yet
    assert lines_of(cursor.events(1, "a\nb\n", "ray", finished=False)) == ["b"]


def test_a_kept_tail_is_an_exact_end_of_the_log_from_a_lines_start():
    log = "".join(f"line {i}\n" for i in range(1000))
    assert log.endswith(log_tail(log))
    assert log_tail(log).startswith("line 700\n")
    long_lines = "short\n" + "y" * 70_000 + "\n" + "z" * 10 + "\n"
    assert log_tail(long_lines) == "z" * 10 + "\n"  # at most 64,000 characters, from a line's start
