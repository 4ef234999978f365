"""A session's first and last messages, kept in its document so that a page of them needs no
read of the `messages` collection (docs/scaling.md, beside the collections' table)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import bson
from bson.binary import Binary
from bson.codec_options import CodecOptions

WINDOWS_FIELD = "message_windows"
"""One BSON binary holding the encoded `{head: [...], tail: [...]}` of message documents.

The head holds messages seq 1..h, contiguous, while each still fitted (then it stops growing
for good); the tail the latest messages, contiguous up to the session's `message_count`
(empty while the head holds them all). Encoded as one opaque value, they cost a read that
does not want them (the embedded database decodes every document it reads) a copy of bytes
rather than the decoding of their documents."""
WINDOW_MESSAGES = 20
"""The most messages a window holds: a console page (`last: 20`) or a listing's `last: 5`."""
WINDOW_BYTES = 16 * 1024
"""The most BSON bytes a window's messages take: what bounds the session document, since one
message may hold 10,000 characters of content and its tool calls."""
WITHOUT_WINDOWS = {WINDOWS_FIELD: 0}
"""The projection part that leaves the windows out of a read."""
UNSET_WINDOWS = {"$unset": {WINDOWS_FIELD: ""}}
"""The update that takes a session's windows away (it is then served as one stored before
them): for tests and benchmarks that compare both layouts."""

Documents = list[dict[str, Any]]


def _contiguous(window: Documents) -> bool:
    if not window:
        return False
    first = window[0]["seq"]
    return all(doc["seq"] == first + offset for offset, doc in enumerate(window))


@dataclass(frozen=True, slots=True)
class MessageWindows:
    """A session's encoded windows, decoded (with the codec options of its collection, as
    the messages themselves would be) only for a page they may hold."""

    raw: bytes
    message_count: int
    codec_options: CodecOptions[dict[str, Any]]

    def covering(self, lo: int, hi: int) -> Documents | None:
        """The message documents seq `lo`..`hi` (lo <= hi) when one window holds them all,
        else None. What a window covers is read from the seqs it holds: the head from
        seq 1, the tail up to `message_count`; a window that disagrees serves nothing."""
        windows = bson.decode(self.raw, self.codec_options)
        head, tail = windows.get("head", []), windows.get("tail", [])
        for window, valid in (
            (head, _contiguous(head) and head[0]["seq"] == 1),
            (tail, _contiguous(tail) and tail[-1]["seq"] == self.message_count),
        ):
            if valid and window[0]["seq"] <= lo and hi <= window[-1]["seq"] <= self.message_count:
                first = window[0]["seq"]
                return list(window[lo - first : hi - first + 1])
        return None


def take_windows(
    doc: dict[str, Any], codec_options: CodecOptions[dict[str, Any]]
) -> MessageWindows | None:
    """Remove the windows from a stored session document; None when it has none (stored
    before them)."""
    raw = doc.pop(WINDOWS_FIELD, None)
    if not isinstance(raw, bytes):
        return None
    return MessageWindows(bytes(raw), doc.get("message_count", 0), codec_options)


def drop_windows(doc: dict[str, Any]) -> None:
    """Remove the windows from a stored session document."""
    doc.pop(WINDOWS_FIELD, None)


def stored_windows(
    doc: dict[str, Any], codec_options: CodecOptions[dict[str, Any]] | None = None
) -> tuple[Documents, Documents]:
    """The head and tail a stored session document holds (empty when it has none), decoded
    with `codec_options` (BSON's defaults unless given)."""
    raw = doc.get(WINDOWS_FIELD)
    if not isinstance(raw, bytes):
        return [], []
    windows = bson.decode(raw) if codec_options is None else bson.decode(raw, codec_options)
    return list(windows.get("head", [])), list(windows.get("tail", []))


def _size(doc: dict[str, Any]) -> int:
    return len(bson.encode(doc))


def windows_after(
    stored: dict[str, Any], previous_count: int, appended: Documents
) -> dict[str, Binary]:
    """The windows to set when `appended` (seqs previous_count+1.., in order) follow the
    session `stored` (its document before, windows included).

    The head grows only while it holds every message so far and the next one fits both
    limits; once one does not, it stays as it is. While the head holds the whole transcript
    the tail is empty (the head answers every page); after, the tail is the previous tail
    (or the whole head) when it ends where `appended` starts, and `appended`, trimmed from
    the front to both limits.
    """
    before, tail = stored_windows(stored)
    sizes = [_size(doc) for doc in appended]
    head = list(before)
    if len(head) == previous_count:
        head_bytes = sum(_size(doc) for doc in head)
        for doc, size in zip(appended, sizes, strict=True):
            if len(head) + 1 > WINDOW_MESSAGES or head_bytes + size > WINDOW_BYTES:
                break
            head.append(doc)
            head_bytes += size
    if len(head) == previous_count + len(appended):
        tail = []
    else:
        if len(before) == previous_count:
            tail = before  # the head held everything until now
        elif not (tail and tail[-1]["seq"] == previous_count):
            tail = []
        tail_sizes = [_size(doc) for doc in tail] + sizes
        tail = tail + appended
        start = max(0, len(tail) - WINDOW_MESSAGES)
        total = sum(tail_sizes[start:])
        while start < len(tail) and total > WINDOW_BYTES:
            total -= tail_sizes[start]
            start += 1
        tail = tail[start:]
    return {WINDOWS_FIELD: Binary(bson.encode({"head": head, "tail": tail}))}
