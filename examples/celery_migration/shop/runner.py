"""Which worker ran a task: for the demonstration only."""

import sys


def runner() -> str:
    spec = getattr(sys.modules["__main__"], "__spec__", None)
    return "pigeon" if spec is not None and spec.name.startswith("pigeon") else "celery"
