"""What the audit log costs: a round's replies recorded at once, and a log verified.

Records ``--batches`` batches of ``--batch`` ``reply.received`` records (the link records
a round's replies of a thousand nodes with one ``record_many``: one write, one fsync)
in a log in a temporary directory (``--dir`` for another disk), then verifies it::

    python benchmarks/audit_log.py                   # 50 batches of 1000
    python benchmarks/audit_log.py --batch 100 --dir /var/tmp

Prints one JSON object: milliseconds per batch (best, median, worst), CPU microseconds
per record, the records a second that verification walks, and the log's size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from corolla.trust import AuditLog, verify_audit_log


def _batch(size: int, run_id: int) -> list[tuple[str, str, dict[str, object]]]:
    return [
        (
            "reply.received",
            "",
            {
                "run_id": run_id,
                "reply_id": uuid.uuid4().hex,
                "reply_to": uuid.uuid4().hex,
                "node_id": 1_000_000 + n,
                "outcome": "ok",
            },
        )
        for n in range(size)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        path = Path(directory) / AuditLog.FILE
        batches = [_batch(args.batch, run_id) for run_id in range(args.batches)]
        seconds = []
        with AuditLog(path) as log:
            for batch in batches:
                started = time.perf_counter()
                log.record_many(batch)
                seconds.append(time.perf_counter() - started)
        started = time.perf_counter()
        verdict = verify_audit_log(path)
        verify_s = time.perf_counter() - started
        size = path.stat().st_size
        started = time.process_time()
        with AuditLog(Path(directory) / "cpu.log") as log:
            log.record_many(batches[0])
        cpu_s = time.process_time() - started
    print(
        json.dumps(
            {
                "batch": args.batch,
                "batches": args.batches,
                "batch_ms": {
                    "best": round(min(seconds) * 1e3, 2),
                    "median": round(statistics.median(seconds) * 1e3, 2),
                    "worst": round(max(seconds) * 1e3, 2),
                },
                "cpu_us_per_record": round(cpu_s / args.batch * 1e6, 2),
                "verified": verdict.ok,
                "verify_records_per_s": round(verdict.records / verify_s),
                "log_bytes": size,
            }
        )
    )


if __name__ == "__main__":
    main()
