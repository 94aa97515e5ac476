"""The pictures: every function returns a matplotlib Figure (never shows one), the replica-log picture has a row
per replica plus the row of acknowledged records no replica holds, and that row is where the lost writes are."""
import functools
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.figure import Figure

import edsim
from edsim import faults
from edsim.viz import PlotAccessor, log_figure, lost_records, png

CUT_THEN_CRASH = [faults.partition(["leader"], ["followers"], at=0.5, heal_after=5),
                  faults.crash("leader", at=1.0, restart_after=2.0)]


@functools.lru_cache(maxsize=None)
def lossy():
    return edsim.simulate(producer={"acks": "1"}, faults=CUT_THEN_CRASH, seed=1)


@functools.lru_cache(maxsize=None)
def clean():
    return edsim.simulate(workload={"messages": 300}, seed=1)


def row_labels(fig):
    """The label of each row of the log picture, top to bottom."""
    return [t.get_text() for t in fig.axes[0].texts]


def image_rows(fig):
    """The grid the log picture draws: one row per replica, then the lost row."""
    return fig.axes[0].images[0].get_array()


def test_plot_is_an_accessor_with_the_three_pictures():
    result = clean()
    assert isinstance(result.plot, PlotAccessor)
    for fig in (result.plot.log(), result.plot.timeline(), result.plot.metrics()):
        assert isinstance(fig, Figure)
        assert png(fig).startswith(b"\x89PNG")


def test_log_picture_has_a_row_per_replica_and_one_for_lost_records():
    result = clean()
    fig = result.plot.log(partition=0)
    grid = image_rows(fig)
    assert grid.shape[0] == 3 + 1                        # replication factor 3, then the lost row
    labels = row_labels(fig)
    assert labels[0].startswith("broker 1") and "leader" in labels[0]
    assert "in no log: 0" in labels[-1]
    assert grid.shape[1] == 300                          # one cell per offset
    assert np.ma.getmaskarray(grid[-1]).all() or np.isnan(np.ma.filled(grid[-1], np.nan)).all()


def test_replication_factor_sets_the_rows():
    result = edsim.simulate(topic={"replication.factor": 2}, workload={"messages": 100}, seed=2)
    assert image_rows(result.plot.log()).shape[0] == 2 + 1


def test_lost_writes_are_the_acknowledged_records_no_replica_holds():
    result = lossy()
    assert result.anomalies["lost-write"] == 507
    state = result.truth.snapshot()
    offsets, values = lost_records(state, result.history)
    assert set(values) == set(result.anomaly_cases["lost-write"]["value"])
    fig = log_figure(state, result.history)
    grid = np.ma.filled(image_rows(fig).astype(float), np.nan)
    assert np.count_nonzero(~np.isnan(grid[-1])) == 507
    assert "in no log: 507" in row_labels(fig)[-1]


def test_epochs_colour_the_cells():
    """The new leader (epoch 1) rewrote the offsets the lost records had; the first 312 are epoch 0."""
    state = lossy().truth.snapshot()
    epochs = {r.broker: {e for _, _, e, _ in r.batches} for r in state.replicas}
    assert all(e == {0, 1} for e in epochs.values())
    grid = np.ma.filled(image_rows(lossy().plot.log()).astype(float), np.nan)
    assert grid[0, 0] == 0 and grid[0, 2000] == 1


def test_the_log_at_an_earlier_time_is_replayed_from_the_seed():
    """At t = 2 s the crashed leader still holds the records its followers never got: nothing is lost yet."""
    fig = lossy().plot.log(at=2.0)
    assert "t = 2.000" in fig.axes[0].get_title()
    labels = row_labels(fig)
    assert "down" in labels[0] and "LEO 819" in labels[0]
    assert "in no log: 0" in labels[-1]


def test_window_zooms_on_offsets():
    fig = lossy().plot.log(window=(300, 329))
    assert image_rows(fig).shape[1] == 30


def test_transaction_kinds_from_batch_attributes():
    """Batches gain ``control`` and ``transactional`` with the transactions capability: the snapshot colours
    a transactional batch by the fate of its producer's next control record."""
    from edsim.truth import _kinds

    class B:
        def __init__(self, pid, control=None, transactional=False):
            self.producer_id, self.control, self.transactional = pid, control, transactional

    batches = [B(1, transactional=True), B(2, transactional=True), B(1, "ABORT"), B(2, "COMMIT"),
               B(3, transactional=True), B(-1)]
    assert _kinds(batches) == ["aborted", "committed", "ABORT", "COMMIT", "open", "data"]


def test_timeline_marks_faults_and_anomalies():
    fig = lossy().plot.timeline()
    assert len(fig.axes) == 4
    legend = [t.get_text() for t in fig.axes[3].get_legend().get_texts()]
    assert "acknowledged, later lost" in legend
    assert any(t.startswith("lost-write (507)") for t in legend)
    spans = [p for p in fig.axes[0].patches]
    assert spans                                       # the faults are shaded


def test_metrics_has_throughput_latency_and_lag():
    fig = lossy().plot.metrics()
    titles = [ax.get_title(loc="left") for ax in fig.axes[:3]]
    assert titles[0] == "throughput" and "latency" in titles[1] and "lag" in titles[2]


MODEL_LAYERS = ("engine", "kafka", "clients", "faults", "app", "apps", "streams", "patterns")
PRESENTATION = ("matplotlib", "ipywidgets", "pandas", "edsim.viz", "edsim.widgets")


def imported_modules(path, package):
    """Every module a source file imports, written out in full: ``import x.y`` and ``from x import y`` (y may
    be a module, so ``x.y`` counts too), relative imports resolved against ``package`` (``from ..viz import
    png`` in edsim/clients/ is edsim.viz), and the names given to importlib.import_module / __import__."""
    import ast
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:                     # from . (level 1) is the package itself, from .. its parent
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) \
                and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                     or (isinstance(node.func, ast.Name) and node.func.id == "__import__")):
            found.add(node.args[0].value)
    return found


def presentation_imports(root):
    """(file, module) for every presentation-layer module a model layer under ``root`` (edsim/) imports."""
    bad = []
    for layer in MODEL_LAYERS:
        for path in sorted((root / layer).rglob("*.py")):
            package = ".".join(path.relative_to(root.parent).parts[:-1])      # an __init__.py's own package
            for module in sorted(imported_modules(path, package)):
                if any(module == p or module.startswith(p + ".") for p in PRESENTATION):
                    bad.append((str(path.relative_to(root.parent)), module))
    return bad


def test_the_import_scan_sees_every_way_of_writing_an_import(tmp_path):
    """The scan must not be fooled by relative imports, ``from x import y``, aliases or importlib."""
    layer = tmp_path / "edsim" / "clients"
    layer.mkdir(parents=True)
    (layer / "ok.py").write_text("import numpy as np\nfrom ..kafka import protocol\nfrom . import assignors\n"
                                 "# import pandas  (a comment is not an import)\n")
    for i, line in enumerate(["import matplotlib.pyplot as plt", "from pandas import DataFrame",
                              "from ..viz import png", "from .. import widgets", "from edsim.viz.log import x",
                              "import importlib\nimportlib.import_module('ipywidgets')",
                              "def later():\n    import pandas as pd"]):
        (layer / f"bad{i}.py").write_text(line + "\n")
    found = presentation_imports(tmp_path / "edsim")
    assert sorted({f for f, _m in found}) == sorted(f"edsim/clients/bad{i}.py" for i in range(7))
    assert not any("ok.py" in f for f, _m in found)


def test_the_model_never_imports_the_presentation_layer():
    """edsim's model (engine, kafka, clients, faults, and app/apps/streams/patterns when they exist) imports
    neither matplotlib, ipywidgets, pandas nor edsim.viz / edsim.widgets, in any form; and running a
    simulation loads none of the drawing or widget modules."""
    from pathlib import Path
    code = ("import sys, edsim, edsim.live; edsim.simulate(workload={'messages': 50}); "
            "import edsim.engine, edsim.kafka, edsim.clients, edsim.faults\n"
            "bad = [m for m in sys.modules if m.startswith(('matplotlib', 'ipywidgets', 'edsim.viz', "
            "'edsim.widgets'))]\n"
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    root = Path(edsim.__file__).parent
    assert {layer for layer in MODEL_LAYERS if (root / layer).is_dir()} >= {"engine", "kafka", "clients", "faults"}
    assert presentation_imports(root) == []


@pytest.fixture(autouse=True)
def _no_pyplot_figures():
    import matplotlib.pyplot as plt
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before, "library code must not open pyplot figures"


def test_transactions_and_the_last_stable_offset_are_drawn_when_present():
    """Before the transactions capability no batch has these kinds and no replica an LSO: the picture is ready
    for them all the same."""
    from edsim.truth import PartitionSnapshot, ReplicaSnapshot
    batches = [(0, 4, 0, "committed"), (4, 5, 0, "COMMIT"), (5, 8, 0, "aborted"), (8, 9, 0, "ABORT"),
               (9, 12, 1, "open")]
    values = np.array([0, 1, 2, 3, -1, 4, 5, 6, -1, 7, 8, 9])
    replicas = [ReplicaSnapshot(broker=b, up=True, paused=False, role="leader" if b == 1 else "follower",
                                in_isr=True, log_start=0, log_end=12, high_watermark=12, last_stable_offset=9,
                                batches=batches, values=values) for b in (1, 2, 3)]
    fig = log_figure(PartitionSnapshot(1.0, "events", 0, 1, 1, (1, 2, 3), replicas))
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    for label in ("epoch 0", "aborted transaction", "open transaction", "commit marker", "abort marker",
                  "last stable offset"):
        assert label in legend
    grid = np.ma.filled(image_rows(fig).astype(float), np.nan)
    assert len({grid[0, 4], grid[0, 6], grid[0, 8], grid[0, 10], grid[0, 0]}) == 5    # five colours
