"""The client side of the package does not load the worker (its parts, its threads' code)."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_package_leaves_the_worker_unloaded_until_asked_for() -> None:
    code = (
        "import sys, infinitic_py\n"
        "from infinitic_py import AsyncClient, BatchLimits, FlushReason\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('infinitic_py.worker'))\n"
        "assert not loaded, loaded\n"
        "from infinitic_py import Worker\n"
        "from infinitic_py.worker.accumulator import FlushReason as F\n"
        "assert Worker.__name__ == 'Worker' and F is FlushReason\n"
        "assert 'infinitic_py.worker' in sys.modules\n"
        "try:\n"
        "    infinitic_py.Nope\n"
        "except AttributeError:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('Nope')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
