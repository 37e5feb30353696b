"""The on-disk spool: records survive reopening, a torn tail is cut off, the size cap holds."""

from __future__ import annotations

import logging
import os

import pytest

from infersight_collector.spool import Record, Spool, SpoolFull, encode


def test_records_survive_reopening_in_order(tmp_path, span_batch):
    records = [Record(f"t{i}", span_batch(i + 1)) for i in range(3)]
    spool = Spool(str(tmp_path), max_bytes=1 << 24)
    spool.append(records[:2])
    spool.append(records[2:])
    spool.close()
    reopened = Spool(str(tmp_path), max_bytes=1 << 24)
    assert reopened.records == 3 and reopened.bytes == spool.bytes
    got = list(reopened)
    assert [r.token for r in got] == ["t0", "t1", "t2"]
    assert all(a.batch.equals(b.batch) for a, b in zip(got, records))


@pytest.mark.parametrize("damage", ["torn", "flipped"])
def test_a_damaged_tail_is_truncated_with_a_warning(tmp_path, span_batch, caplog, damage):
    spool = Spool(str(tmp_path), max_bytes=1 << 24)
    spool.append([Record("good", span_batch(4))])
    spool.close()
    (segment,) = [tmp_path / n for n in os.listdir(tmp_path)]
    good_size = segment.stat().st_size
    last = b"".join(encode(Record("last", span_batch(4))))
    with open(segment, "ab") as f:
        if damage == "torn":  # a write cut short by a crash
            f.write(last[: len(last) // 2])
        else:  # a complete record whose bytes changed on disk
            f.write(last[:-1] + bytes([last[-1] ^ 0xFF]))
    with caplog.at_level(logging.WARNING, logger="infersight_collector.spool"):
        reopened = Spool(str(tmp_path), max_bytes=1 << 24)
    assert [r.token for r in reopened] == ["good"]
    assert segment.stat().st_size == good_size
    assert "dropping the last" in caplog.text


def test_append_past_the_cap_raises_and_writes_nothing(tmp_path, span_batch):
    one = Record("a", span_batch(10))
    spool = Spool(str(tmp_path), max_bytes=int(len(b"".join(encode(one))) * 1.5))
    spool.append([one])
    with pytest.raises(SpoolFull):
        spool.append([Record("b", span_batch(10))])
    assert spool.records == 1 and [r.token for r in spool] == ["a"]


def segments(path) -> list[str]:
    return sorted(n for n in os.listdir(path) if n.endswith(".spool"))


def test_segments_roll_over_and_drained_ones_are_deleted(tmp_path, span_batch):
    spool = Spool(str(tmp_path), max_bytes=1 << 24, segment_bytes=1)
    for i in range(3):
        spool.append([Record(f"t{i}", span_batch(2))])
    assert len(segments(tmp_path)) == 3
    segment, records = spool.take_segment()
    assert [r.token for r in records] == ["t0"]
    spool.segment_done(segment)
    assert spool.records == 2 and len(segments(tmp_path)) == 2
    assert [r.token for r in spool.take_segment()[1]] == ["t1"]


def test_a_taken_segment_is_sealed_and_taken_whole(tmp_path, span_batch):
    """A segment is inserted as one: taking it returns all its records and stops it growing,
    so a replay after a crash inserts exactly the same records."""
    spool = Spool(str(tmp_path), max_bytes=1 << 24)
    spool.append([Record("a", span_batch(2))])
    spool.append([Record("b", span_batch(3)), Record("c", span_batch(1))])
    segment, records = spool.take_segment()
    assert [r.token for r in records] == ["a", "b", "c"]
    spool.append([Record("d", span_batch(2))])  # goes to a new segment
    assert len(segments(tmp_path)) == 2
    assert [r.token for r in spool.take_segment()[1]] == ["a", "b", "c"]  # not done yet
    spool.segment_done(segment)
    assert spool.records == 1 and len(segments(tmp_path)) == 1
    spool.close()
    assert [r.token for r in Spool(str(tmp_path), 1 << 24)] == ["d"]


def test_request_tokens_outlive_their_segment_and_a_reopen(tmp_path, span_batch):
    """A group's request tokens are what lets a re-sent request be recognised after a
    crash; they must survive the deletion of the segment that held the group."""
    spool = Spool(str(tmp_path), max_bytes=1 << 24, segment_bytes=1)
    spool.append([Record("g1", span_batch(2), ("r1", "r2"))])
    spool.append([Record("g2", span_batch(2), ("r3",))])
    spool.segment_done(spool.take_segment()[0])  # g1 is in the store: its segment goes
    assert len(segments(tmp_path)) == 1
    spool.close()
    reopened = Spool(str(tmp_path), max_bytes=1 << 24)
    assert reopened.recent_requests() == ["r1", "r2", "r3"]
    assert [(r.token, r.requests) for r in reopened] == [("g2", ("r3",))]


def test_the_request_window_keeps_the_latest(tmp_path, span_batch):
    spool = Spool(str(tmp_path), max_bytes=1 << 24, window_requests=3)
    for i in range(10):
        spool.append([Record(f"g{i}", span_batch(1), (f"r{i}",))])
        spool.segment_done(spool.take_segment()[0])
    assert Spool(str(tmp_path), 1 << 24, window_requests=3).recent_requests() == \
        ["r7", "r8", "r9"]


def test_a_spool_that_keeps_up_never_fills(tmp_path, span_batch):
    """A segment is deleted as soon as it is in the store, so its bytes count no more."""
    one = Record("a", span_batch(10))
    spool = Spool(str(tmp_path), max_bytes=int(len(b"".join(encode(one))) * 1.5))
    for i in range(5):
        spool.append([Record(f"g{i}", span_batch(10))])
        spool.segment_done(spool.take_segment()[0])
    assert spool.records == 0 and spool.bytes == 0 and not segments(tmp_path)
