"""The README's Python API example runs as written (issue 20, point 9)."""

from __future__ import annotations

import re
from pathlib import Path

import torch

README = Path(__file__).resolve().parents[1] / "README.md"


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    m = re.search(r"<!-- audit-api-example -->\s*```python\n(.*?)```", text, re.S)
    assert m, "README has no audit API example"
    return "\n".join(line[2:] if line.startswith("  ") else line
                     for line in m.group(1).splitlines())


def test_readme_audit_api_example_runs(tmp_path, monkeypatch, capsys):
    import neurodeploy
    from neurodeploy.attacks.toy import train_digits_snn
    from neurodeploy.audit.report import AuditReport
    from neurodeploy.models import save_checkpoint

    torch.manual_seed(0)
    model = train_digits_snn(encoding="bernoulli", arch="FC32-FC10", num_steps=6, epochs=2,
                             readout="rate").model
    save_checkpoint(tmp_path / "model.pt", model)
    monkeypatch.chdir(tmp_path)
    scope: dict = {}
    exec(compile(_example(), "README.md", "exec"), scope)
    report = scope["report"]
    assert isinstance(report, AuditReport) and report.meta["samples"] == 20
    assert (tmp_path / "audit_api" / "audit.json").is_file()
    out = capsys.readouterr().out.splitlines()
    assert out[:len(report.verdicts)] == report.verdicts
    assert out[-1] in ("survived", "dropped", "inconclusive", "better beyond margin")
    assert report.model["defense"] == "unknown"  # the toy checkpoint records no training
    assert report.exact is None
    assert callable(neurodeploy.audit)
