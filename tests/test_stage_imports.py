"""Stage entry points import only what they use at the top.

The data stages need neither torch, mlflow nor matplotlib; the others load torch and
matplotlib inside main(), because their MLflow worker process re-imports the entry point
(multiprocessing's spawn) and must not pay for them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "mlflow", "matplotlib", "pandas")

PROBE = """
import json, runpy, sys
runpy.run_path(sys.argv[1], run_name="__mp_main__")
print(json.dumps([name for name in sys.argv[2:] if name in sys.modules]))
"""


def heavy_modules_loaded(stage: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, str(REPO / "stages" / stage), *HEAVY], capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("stage", ["download.py", "subset.py", "train.py", "evaluate.py", "render_figures.py"])
def test_stage_module_loads_no_heavy_library_at_import(stage):
    assert heavy_modules_loaded(stage) == []
