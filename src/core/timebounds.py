"""The times a reading may carry.

Outside these bounds a time is a typing or clock mistake, and some sinks
cannot store it at all (a CSV time past year 9999, an InfluxDB point past
2262): a replay refuses such a time up front, and the meter never stamps
one from a monotonic step (an estimate after a gap of decades), rather than
jamming a sink later.
"""

EARLIEST = 946_684_800.0  # 2000-01-01T00:00:00Z
LATEST = 4_102_444_800.0  # 2100-01-01T00:00:00Z
