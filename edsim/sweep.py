"""Many runs of one scenario: seeds times settings, over any ``concurrent.futures.Executor``."""
from __future__ import annotations

import itertools

import pandas as pd


def _run_one(job):
    scenario, changes, seed = job
    result = scenario.replace(**changes).run(seed=seed)
    row = {"seed": seed, **changes}
    row.update(result.counts())
    row.update(result.anomalies)
    txns = result.transactions()
    if len(txns):                         # the cost of transactions, for sweeps over commit intervals
        committed = txns[txns["outcome"] == "committed"]
        row["transactions"] = len(txns)
        row["transaction latency p50 (ms)"] = float(committed["latency_ms"].median()) if len(committed) else None
    for name, value in result.pipeline().items():
        if not isinstance(value, str):
            row[f"pipeline: {name}"] = float(value)
    return row


def sweep(scenario, seeds=range(10), vary: dict | None = None, executor=None, progress=None) -> pd.DataFrame:
    """One row per run: the varied settings (dotted names such as ``"producer.acks"``), the seed, the counts and
    every anomaly. ``executor`` may be any ``concurrent.futures.Executor`` (a process pool, or a
    dask.distributed client's ``get_executor()``); without one the runs go one after another.

    ``progress``: None (nothing shown), True (a text bar on stderr) or ``progress(done, total)``, called after
    each run (in the order of the rows)."""
    from .progress import sweep_progress
    report = sweep_progress(progress)
    vary = dict(vary or {})
    names = list(vary)
    combos = [dict(zip(names, values)) for values in itertools.product(*(vary[n] for n in names))] or [{}]
    for changes in combos:
        scenario.replace(**changes)          # fail fast on a bad name or value, before anything runs
    jobs = [(scenario, changes, seed) for changes in combos for seed in seeds]
    results = executor.map(_run_one, jobs) if executor is not None else map(_run_one, jobs)
    rows = []
    if report is not None:
        report(0, len(jobs))
    for row in results:
        rows.append(row)
        if report is not None:
            report(len(rows), len(jobs))
    return pd.DataFrame(rows)
