"""A session's first and last messages, kept in its document so that a page of them needs no
read of the `messages` collection (docs/scaling.md, "The session document")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bson

HEAD_FIELD = "message_head"
"""Messages seq 1..h, contiguous, while each still fitted (then it stops growing for good)."""
TAIL_FIELD = "message_tail"
"""The latest messages, contiguous up to the session's `message_count`; empty while the head
holds them all."""
WINDOW_FIELDS = (HEAD_FIELD, TAIL_FIELD)
WINDOW_MESSAGES = 20
"""The most messages a window holds: a console page (`last: 20`) or a listing's `last: 5`."""
WINDOW_BYTES = 16 * 1024
"""The most BSON bytes a window's messages take: what bounds the session document, since one
message may hold 10,000 characters of content and its tool calls."""
WITHOUT_WINDOWS = dict.fromkeys(WINDOW_FIELDS, 0)
"""The projection part that leaves the windows out of a read."""

Documents = list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class MessageWindows:
    """The message documents of a session's two windows, each contiguous; a window that does
    not agree with the session's `message_count` is empty."""

    head: Documents
    tail: Documents

    def covering(self, lo: int, hi: int) -> Documents | None:
        """The message documents seq `lo`..`hi` (lo <= hi) when one window holds them all,
        else None."""
        for window in (self.head, self.tail):
            if window and window[0]["seq"] <= lo and hi <= window[-1]["seq"]:
                first = window[0]["seq"]
                return window[lo - first : hi - first + 1]
        return None


def _contiguous(window: Any) -> bool:
    if not isinstance(window, list) or not window:
        return False
    first = window[0]["seq"]
    return all(doc["seq"] == first + offset for offset, doc in enumerate(window))


def take_windows(doc: dict[str, Any]) -> MessageWindows:
    """Remove the windows from a stored session document; what of them can be served.

    What a window covers is read from the seqs it holds: the head from seq 1, the tail up to
    `message_count`. A session stored without windows, or whose windows disagree with its
    count (a write that did not finish on a deployment without transactions), has none.
    """
    head = doc.pop(HEAD_FIELD, None)
    tail = doc.pop(TAIL_FIELD, None)
    count = doc.get("message_count", 0)
    if not (_contiguous(head) and head[0]["seq"] == 1 and head[-1]["seq"] <= count):
        head = []
    if not (_contiguous(tail) and tail[-1]["seq"] == count):
        tail = []
    return MessageWindows(head, tail)


def drop_windows(doc: dict[str, Any]) -> None:
    """Remove the windows from a stored session document."""
    for field in WINDOW_FIELDS:
        doc.pop(field, None)


def _size(doc: dict[str, Any]) -> int:
    return len(bson.encode(doc))


def windows_after(
    stored: dict[str, Any], previous_count: int, appended: Documents
) -> dict[str, Documents]:
    """The window fields to set when `appended` (seqs previous_count+1.., in order) follow
    the session `stored` (its document before, windows included).

    The head grows only while it holds every message so far and the next one fits both
    limits; once one does not, it stays as it is. While the head holds the whole transcript
    the tail is empty (the head answers every page); after, the tail is the previous tail
    (or the whole head) when it ends where `appended` starts, and `appended`, trimmed from
    the front to both limits.
    """
    sizes = [_size(doc) for doc in appended]
    fields: dict[str, Documents] = {}
    before: Documents = list(stored.get(HEAD_FIELD) or [])
    head = list(before)
    if len(head) == previous_count:
        head_bytes = sum(_size(doc) for doc in head)
        for doc, size in zip(appended, sizes, strict=True):
            if len(head) + 1 > WINDOW_MESSAGES or head_bytes + size > WINDOW_BYTES:
                break
            head.append(doc)
            head_bytes += size
        if len(head) > len(before):
            fields[HEAD_FIELD] = head
    if len(head) == previous_count + len(appended):
        fields[TAIL_FIELD] = []
        return fields
    tail: Documents = list(stored.get(TAIL_FIELD) or [])
    if len(before) == previous_count:
        tail = before  # the head held everything until now
    elif not (tail and tail[-1]["seq"] == previous_count):
        tail = []
    tail_sizes = [_size(doc) for doc in tail] + sizes
    tail += appended
    start = max(0, len(tail) - WINDOW_MESSAGES)
    total = sum(tail_sizes[start:])
    while start < len(tail) and total > WINDOW_BYTES:
        total -= tail_sizes[start]
        start += 1
    fields[TAIL_FIELD] = tail[start:]
    return fields
