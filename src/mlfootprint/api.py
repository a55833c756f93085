"""The Python API: every verb of the command line, with the same defaults, returning a Report.

    import mlfootprint as mf
    rep = mf.count("llama-2-7b", mf.Workload(batch=1, seq=4096, mode="train"))
    rep.sections["flops"]["model"], rep.sections["params"]["total"]

    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    rep = mf.count(net, mf.Workload(mode="train"), inputs=[torch.randn(3, 8)])   # net is not modified
"""
from __future__ import annotations

from .report.schema import Report
from .verbs.analyze import analyze
from .verbs.bench import bench
from .verbs.catalogs import hardware_calibrate, hardware_list, hardware_show, models_list, models_show
from .verbs.claims import claims
from .verbs.compare import compare
from .verbs.table import table
from .verbs.count import count
from .verbs.footprint import footprint
from .verbs.history import history_add, history_diff, history_list, history_show
from .verbs.memory import memory
from .verbs.mfu import mfu
from .verbs.plan import plan
from .verbs.predict import predict
from .verbs.report import load_report
from .verbs.track import track
from .workload import Layout, Workload

__all__ = [
    "Report", "Workload", "Layout",
    "analyze", "count", "memory", "predict", "plan", "mfu", "bench", "footprint", "track",
    "models_list", "models_show", "hardware_list", "hardware_show", "hardware_calibrate",
    "claims", "compare", "table", "load_report", "history_add", "history_list", "history_show", "history_diff",
]
