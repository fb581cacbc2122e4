"""Where a follower of a job's log is, so that each line reaches it once and whole: which attempt,
which source (Ray's whole log while Ray has the execution, else the tail kept when the attempt ended,
an exact suffix of that log), and how far into it. Each line's event id says that place, so a client
that reconnects with it (Last-Event-ID) goes on from there. When the source changes from Ray's log
to the kept tail, the place is found again in the tail from the end of what was sent."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Source = Literal["ray", "tail"]
RECENT_CHARACTERS = 64_000  # as much of what was sent as the kept tail holds at most
_EVENT_ID = re.compile(r"([0-9]{1,9}):(t?)([0-9]{1,12})")


@dataclass
class LogCursor:
    attempt: int | None = None
    source: Source | None = None
    sent: int = 0  # characters of the source sent
    recent: str = ""  # the end of what was sent, to find the place when the source changes

    @classmethod
    def resumed(cls, last_event_id: str) -> LogCursor:
        """At the place a reconnecting client's Last-Event-ID names (the id of the last line it
        received); at the start for anything else."""
        match = _EVENT_ID.fullmatch(last_event_id)
        if match is None:
            return cls()
        return cls(attempt=int(match[1]), source="tail" if match[2] else "ray", sent=int(match[3]))

    def events(self, attempt: int | None, text: str, source: Source | None, *, finished: bool) -> list[str]:
        """The server-sent events for what `text` (the attempt's log from `source`; None: no log to
        read now) has beyond the place: whole lines only until the job has finished."""
        events = []
        if attempt != self.attempt:  # a retry's log starts from its beginning
            if self.attempt is not None:
                events.append(f"id: {attempt}:0\ndata: [attempt {attempt}]\n\n")
            self.attempt, self.source, self.sent, self.recent = attempt, None, 0, ""
        if source is None:
            return events
        if source != self.source:
            self.sent = _place_in(text, self.recent) if self.source is not None else 0
            self.source = source
        whole = text if finished else text[: text.rfind("\n") + 1]  # a line being written waits for its end
        start = self.sent
        for line in whole[start:].splitlines(keepends=True):  # a read that came back short sends nothing
            self.sent += len(line)
            marker = "t" if self.source == "tail" else ""
            events.append(f"id: {attempt}:{marker}{self.sent}\ndata: {(line.splitlines() or [''])[0]}\n\n")
        self.recent = (self.recent + whole[start : self.sent])[-RECENT_CHARACTERS:]
        return events


def _place_in(text: str, sent: str) -> int:
    """How much of `text` was already sent: the longest start of it, up to a line's end, that `sent`
    ends with (0 when none does: it is all sent again rather than cut mid-line)."""
    ends = [index + 1 for index, character in enumerate(text) if character == "\n"]
    for end in sorted({*ends, len(text)}, reverse=True):
        if end <= len(sent) and sent.endswith(text[:end]):
            return end
    return 0
