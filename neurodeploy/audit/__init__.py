"""The hardware robustness audit — and, called as a function, its Python API.

``neurodeploy.audit(model, out_dir=..., config=...)`` runs the audit of
:func:`neurodeploy.audit.run.run_audit` (stages in :mod:`neurodeploy.audit.flow`) and returns
the :class:`~neurodeploy.audit.report.AuditReport`: verdict lines, accuracy rows with their
intervals, paired comparisons with their equivalence verdicts, checks, provenance — the
object the JSON, Markdown and HTML are rendered from. Importing this package stays cheap (no
torch); the work is imported when the audit is called.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any


def audit(model: Any, x: Any = None, y: Any = None, *, out_dir: str | Path,
          config: Any = None, profile: str = "loihi2", plan: Any = None, quiet: bool = True,
          workers: int | None = None, address: str | None = None) -> Any:
    """Audit ``model`` on ``(x, y)`` and write ``out_dir/audit.{json,md,html}``.

    Parameters
    ----------
    model : a :class:`~neurodeploy.models.SpikingNet`, or the path of a neurodeploy
        checkpoint (its training provenance — defense, options, training ε, epochs — then
        goes into the report).
    x, y : images ``[N, C, H, W]`` in [0, 1] and labels ``[N]``; default the embedded digits
        test split.
    out_dir : folder of the report and of the audit's resumable state.
    config : an :class:`~neurodeploy.audit.run.AuditConfig` (default: the full audit).
    profile, plan, quiet, workers, address : as :func:`~neurodeploy.audit.run.run_audit`.

    Returns
    -------
    AuditReport
        ``report.verdicts``, ``report.accuracy`` (rows with ``ci95``), ``report.comparisons``
        (``equivalence`` per (threat model, ε)), ``report.exact`` (None without an exact
        verifier), …
    """
    from neurodeploy.audit.run import AuditConfig, run_audit

    info: dict[str, Any] = {}
    if isinstance(model, (str, Path)):
        from neurodeploy.audit.provenance import checkpoint_provenance
        from neurodeploy.models import load_checkpoint

        model, rec = load_checkpoint(model)
        info = checkpoint_provenance(rec)
    if x is None or y is None:
        from neurodeploy.data.core import load_digits_split

        test = load_digits_split().test
        x, y = test.x, test.y
    return run_audit(model, x, y, profile, config or AuditConfig(), out_dir, model_info=info,
                     quiet=quiet, plan=plan, workers=workers, address=address)


class _CallableModule(types.ModuleType):
    """``neurodeploy.audit`` is both this package and the function :func:`audit`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return audit(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
