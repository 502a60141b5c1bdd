"""An fp32 evaluation on CUDA records whether its convolutions and matmuls could run as TF32."""

from __future__ import annotations

import torch

from ntre_zoo.evaluation.loop import tf32_record


def test_cuda_records_the_tf32_switches_and_the_cpu_nothing(monkeypatch):
    assert tf32_record("cpu") is None and tf32_record(torch.device("cpu")) is None
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    assert tf32_record("cuda:0") == {"convolutions": True, "matmul": False}  # torch's defaults
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert tf32_record("cuda") == {"convolutions": False, "matmul": False}
