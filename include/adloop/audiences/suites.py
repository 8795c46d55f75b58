"""The gates of one audience sync, run before anything is sent to Meta.

1. `segment_rows_suite`: every staged row. Each key is a SHA-256 digest as 64 lowercase hex
   characters or empty (a clear email or phone fails it), every row has an email or a phone to
   match on, and the source id carries no email.
2. `segment_size_suite`: one row of counts. The segment is at least the minimum for the
   audience's use, and it has not shrunk by more than the allowed share against what Meta has
   from the last sync (a sudden drop is more often a broken source than lost customers).
"""

from __future__ import annotations

from adloop.quality.gate import Param, Suite, between, in_set, lacks, matches
from adloop.warehouse.audience_schema import MEMBER_KEYS

SHA256_HEX = r"^[0-9a-f]{64}$"

SEGMENT_ROWS_QUERY = f"""
SELECT member_key, source_id, {", ".join(MEMBER_KEYS)},
       CASE WHEN em IS NOT NULL OR ph IS NOT NULL THEN 1 ELSE 0 END AS has_match_key
FROM audience_candidates
WHERE sync_id = :sync_id
"""

SEGMENT_SIZE_QUERY = """
SELECT segment_size, previous_size,
       CASE WHEN previous_size > 0 AND segment_size < previous_size
            THEN (previous_size - segment_size) * 1.0 / previous_size ELSE 0.0 END AS shrink_share
FROM (SELECT (SELECT count(*) FROM audience_candidates WHERE sync_id = :sync_id) AS segment_size,
             (SELECT count(*) FROM audience_members WHERE audience_key = :audience_key) AS previous_size) AS s
"""


def segment_rows_suite() -> Suite:
    """Params: sync_id."""
    return Suite(
        name="audience_segment_rows",
        query=SEGMENT_ROWS_QUERY,
        expectations=(
            matches("member_key", SHA256_HEX),
            *(matches(key, SHA256_HEX) for key in MEMBER_KEYS),
            in_set("has_match_key", (1,)),
            lacks("source_id", "@"),
        ),
    )


def segment_size_suite() -> Suite:
    """Params: sync_id, audience_key, min_size, max_shrink (1.0 when the run allows any shrink)."""
    return Suite(
        name="audience_segment_size",
        query=SEGMENT_SIZE_QUERY,
        expectations=(
            between("segment_size", Param("min_size"), samples=True),
            between("shrink_share", max_value=Param("max_shrink"), samples=True),
        ),
    )
