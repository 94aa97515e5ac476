"""The benchmark runs and reports every row (speed is read from its output, never asserted in a test)."""
import json

from edsim import bench


def test_the_benchmark_runs_and_writes_its_table(tmp_path):
    out = tmp_path / "bench.json"
    rows = bench.main(["--quick", "--records", "3000", "--json", str(out), "--plot", str(tmp_path / "scale.png")])
    saved = json.loads(out.read_text())
    assert saved["records"] == 3000
    for name in ("bare SimPy events/s", "hand-rolled model records/s", "edsim / bare SimPy", "edsim / hand-rolled",
                 "checker seconds per million history rows", "peak memory, MB",
                 "panel re-run (Run button), seconds", "function calls per record (counted, not timed)",
                 "network messages per record"):
        assert saved[name] == rows[name] and rows[name] > 0
    assert [n for n, _ in saved["scaling"]["partitions"]] == [1, 3]
    chapters = [name for name in saved if name.startswith("panel re-run, ")]
    assert len(chapters) == 8 and all(saved[name] > 0 for name in chapters)
    counted = [name for name in saved if name.startswith("panel Run click, ")]
    assert len(counted) == 9 and all(saved[name] > 1000 for name in counted)     # the default panel and 8 chapters
    assert [k for k, _ in saved["scaling"]["faults"]] == [0, 4] and all(t > 0 for _, t in saved["scaling"]["faults"])
    assert all(t > 0 for _, t in saved["scaling"]["records"]) and (tmp_path / "scale.png").stat().st_size > 0


def test_work_per_record_is_counted_so_two_runs_agree():
    """The counted rows compare commits exactly where timings wander with the machine: the same run counts the
    same calls (to a few calls in a hundred thousand: caches warmed by an earlier run) and the same messages."""
    bench.work_per_record(300)                        # first use of pandas and numpy paths in this process
    (calls_a, messages_a), (calls_b, messages_b) = bench.work_per_record(300), bench.work_per_record(300)
    assert messages_a == messages_b > 0
    assert calls_a > 10 and abs(calls_a - calls_b) / calls_a < 1e-3
