"""Performance benchmarks: python -m valbench.perf COMMAND [ARGS]. Each writes its results under
results/perf/ with the machine that produced them; methods are built by name (make_method).

python -m valbench.perf engine        # batched engine vs the per-mask scikit-learn loop
python -m valbench.perf estimators    # error vs budget of the subset estimators
python -m valbench.perf chunks        # engine throughput vs CPU chunk size (the default's calibration)
python -m valbench.perf anchors       # valbench vs OpenDataVal on the shared anchor task
python -m valbench.perf gpu           # every GPU target in one command (a tiny mode on CPU)
python -m valbench.perf ame-scale     # AME's estimator time and memory against n
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {  # command -> module with main(argv) and a docstring whose first line says what it does
    "engine": "valbench.perf.engine",
    "estimators": "valbench.perf.estimators",
    "chunks": "valbench.perf.chunks",
    "anchors": "valbench.perf.anchors",
    "gpu": "valbench.perf.gpu",
    "ame-scale": "valbench.perf.ame_scale",
}


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        given = f"unknown command {argv[0]!r}; " if argv and argv[0] not in ("-h", "--help") else ""
        print(f"{__doc__}\n{given}commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 2
    importlib.import_module(COMMANDS[argv[0]]).main(argv[1:])
    return 0
