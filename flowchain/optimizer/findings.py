"""The optimizer's findings for every profiled chain of a history database, cheaply: what the
report, the dashboard and the node's exit summary show.

Every chain version with step profiles is analysed as ``flowchain optimize`` would, except
that ``parallel`` is left unsized (sizing it starts a worker pool to measure its dispatch cost,
which a summary must not) and, without a registry, each remedy is sized as if the component
declared the trait it needs (the text says so). Versions are named by their chain name and
content-hash id; the steps come from the version's stored definition when the database has it,
else from its latency history.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flowchain.chain import ChainDefinition, ChainStep, load_chains
from flowchain.optimizer.optimizer import ChainOptimizer, NoHistory, OptimizationResult

log = logging.getLogger("flowchain.optimizer")


def _profiled_versions(conn: Any) -> list[str]:
    have = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                        "name = 'step_profiles'").fetchone()
    if not have:
        return []
    return [r[0] for r in conn.execute("SELECT DISTINCT chain_id FROM step_profiles "
                                       "ORDER BY chain_id")]


def _definition(conn: Any, chain_id: str) -> ChainDefinition | None:
    has_defs = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND "
                            "name = 'chain_definitions'").fetchone()
    if has_defs:
        row = conn.execute("SELECT definition FROM chain_definitions WHERE chain_id = ?",
                           (chain_id,)).fetchone()
        if row is not None:
            for d in load_chains(row[0]):
                if d.chain_id == chain_id:
                    return d
    rows = conn.execute("SELECT DISTINCT chain, step, step_index, expected_ns FROM "
                        "latency_intervals WHERE chain_id = ? AND step_index >= 0 "
                        "ORDER BY step_index", (chain_id,)).fetchall()
    if not rows:
        return None
    steps = tuple(ChainStep(step, "", "", "", (expected or 1) / 1e6)
                  for _, step, _, expected in rows)
    return _Versioned(rows[0][0], steps, chain_id)


class _Versioned(ChainDefinition):
    """A definition rebuilt from latency history: its steps and the id it was recorded under."""

    __slots__ = ("_id",)

    def __init__(self, name: str, steps: tuple[ChainStep, ...], chain_id: str) -> None:
        super().__init__(name, steps)
        object.__setattr__(self, "_id", chain_id)

    @property
    def chain_id(self) -> str:  # type: ignore[override]
        return self._id


def chain_findings(db_path: str | Path, registry: Any = None) -> list[OptimizationResult]:
    """Return the optimizer's result for every profiled chain version in ``db_path``.

    Never raises for one chain's sake: a version that cannot be analysed is left out (logged).
    """
    from flowchain.optimizer.recorded_inputs import open_for_reading

    path = Path(db_path)
    if not path.is_file():
        return []
    conn = open_for_reading(path)
    try:
        versions = [(cid, _definition(conn, cid)) for cid in _profiled_versions(conn)]
    finally:
        conn.close()
    optimizer = ChainOptimizer(path, registry, size_parallelism=False,
                               assume_traits=registry is None)
    out = []
    for chain_id, definition in versions:
        if definition is None:
            continue
        try:
            out.append(optimizer.analyze(definition))
        except NoHistory:
            continue
        except Exception:  # a summary never fails for one chain
            log.exception("optimizer analysis of %s failed", chain_id)
    return out


def finding_rows(results: list[OptimizationResult]) -> list[dict[str, Any]]:
    """One plain row per bottleneck (``chain``, ``chain_id``, ``step``, ``type``,
    ``suggestion``, ``p50_speedup``): what the dashboard's optimizer panel shows."""
    from flowchain.optimizer.optimizer import describe

    rows = []
    for r in results:
        by_step = {o.step: o for o in (*r.optimizations, *r.blocked)}
        imp = r.estimated_improvement
        for b in r.bottlenecks:
            opt = by_step.get(b.step)
            if opt is not None and opt.applicable:
                text = describe(opt)
                if r.assumed_traits:
                    trait = "deterministic" if opt.kind == "cache" else "element-wise"
                    text += f" (if the component is declared {trait})"
            else:
                text = opt.reason if opt is not None and opt.reason else "-"
            rows.append({"chain": r.chain, "chain_id": r.chain_id, "step": b.step,
                         "type": b.type, "suggestion": text,
                         "p50_speedup": round(imp.p50_speedup, 3)
                         if imp is not None and opt is not None and opt.applicable else None})
    return rows
