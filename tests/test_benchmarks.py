"""The throughput benchmark runs without a GPU (timings are never asserted)."""

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# One backend: the table and JSON are backend-independent; benchmarks/run_gpu.sh
# runs the benchmark under every backend on a GPU machine.
@pytest.mark.backends("jax")
def test_tiny_throughput_benchmark_writes_its_table(tmp_path):
    bench = _load("throughput_benchmark", "benchmarks/throughput.py")
    out = tmp_path / "throughput.json"
    payload = bench.main(["--tiny", "--presets", "gcm_cu", "--output", str(out)])
    saved = json.loads(out.read_text())
    assert saved == json.loads(json.dumps(payload))
    (result,) = saved["results"]
    assert result["preset"] == "gcm_cu" and result["mmd"] is True
    assert result["images_per_s"] > 0
    assert result["sec_per_kimg"] == 1000.0 / result["images_per_s"]
    assert saved["precision"] == "bf16" and saved["tiny"] is True
