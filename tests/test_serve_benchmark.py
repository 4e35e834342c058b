"""benchmarks/serving.py end to end on a fresh untrained model: every figure line is printed."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # the serving benchmark script, loading models in fresh processes
def test_serving_benchmark_prints_load_separate_and_request_times() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "serving.py"), "--loads", "1", "--repeats", "2", "--batch", "10"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    number = r"\d+\.\d"
    assert re.search(
        rf"^load by alias, fresh process: import mlflow median {number} s .*; "
        rf"load_model median {number} s",
        out,
        flags=re.M,
    )
    assert re.search(rf"^separate one 32×32 picture \(predict\): median {number} ms", out, flags=re.M)
    assert re.search(
        rf"^separate 10 32×32 pictures \(predict\): median {number} s .*; \d+ pictures/s$", out, flags=re.M
    )
    assert re.search(
        rf"^served model, one 32×32 request: median {number} ms \(min {number}, max {number}, n=2\)$", out, flags=re.M
    )
