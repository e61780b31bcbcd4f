"""The main job: SP vs IP (vs dense) from the same initial weights and the same data order."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..foundations.hparams import to_dict
from ..foundations.io import atomic_write_json, atomic_write_text
from .config import RunConfig
from .run import claim_run_dir, load_data, run, with_representation

COLUMNS = [
    ("representation", "repr", "{}"),
    ("test_acc", "test acc", "{:.2%}"),
    ("best_test_acc", "best acc", "{:.2%}"),
    ("train_loss", "final train loss", "{:.4f}"),
    ("nonzero", "nonzero prunable", "{}"),
    ("basis_params", "FB params", "{}"),
    ("basis_overhead", "FB overhead", "{:.3%}"),
    ("sparse_flops", "MFLOPs/sample", "{:.2f}"),
    ("sparse_bytes", "file (KB)", "{:.1f}"),
    ("wall_time", "wall time", "{:.1f} s"),
]


SCALE = {"sparse_flops": 1e6, "sparse_bytes": 1e3}


@dataclass
class Comparison:
    config: RunConfig
    rows: list[dict]

    def winner(self) -> str:
        """``"ip"``, ``"sp"`` or ``"tie"`` by final test accuracy."""
        acc = {r["representation"]: r["test_acc"] for r in self.rows}
        if acc["ip"] == acc["sp"]:
            return "tie"
        return "ip" if acc["ip"] > acc["sp"] else "sp"

    def markdown(self) -> str:
        head = "| " + " | ".join(c[1] for c in COLUMNS) + " |"
        sep = "|" + "|".join("---" for _ in COLUMNS) + "|"
        lines = [head, sep]
        for r in self.rows:
            cells = [
                "-" if r.get(k) is None else fmt.format(r[k] / SCALE[k] if k in SCALE else r[k])
                for k, _, fmt in COLUMNS
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def verdict(self) -> str:
        acc = {r["representation"]: r["test_acc"] for r in self.rows}
        diff = acc["ip"] - acc["sp"]
        p, c = self.config.prune, self.config
        who = {"ip": "IP wins", "sp": "SP wins", "tie": "tie"}[self.winner()]
        return (
            f"{who}: IP - SP = {diff * 100:+.2f} points test accuracy "
            f"({p.method} at {p.sparsity:.0%} sparsity, {c.model.model} on {c.data.dataset}, "
            f"{c.train.epochs} epochs, seed {c.train.seed})"
        )


def compare(
    cfg: RunConfig,
    out_dir: str | Path | None = None,
    dense: bool = True,
    progress: bool = True,
    resume: bool = False,
    overwrite: bool = False,
) -> Comparison:
    """Train SP, IP and (optionally) dense under ``cfg``; write JSON and Markdown to ``out_dir``."""
    dataset = load_data(cfg.data)
    out = Path(out_dir) if out_dir is not None else None
    reps = ["sp", "ip"] + (["dense"] if dense else [])
    rows = []
    for rep in reps:
        sub = out / rep if out is not None else None
        sub_cfg = with_representation(cfg, rep)
        if resume and not overwrite and sub is not None and (sub / "summary.json").is_file():
            claim_run_dir(sub, sub_cfg, resume=True, overwrite=False)  # same config, or refuse
            rows.append(json.loads((sub / "summary.json").read_text()))  # finished: show it
            continue
        result = run(
            sub_cfg,
            sub,
            dataset=dataset,
            progress=progress,
            resume=resume,
            overwrite=overwrite,
        )
        rows.append(result.summary)
    comparison = Comparison(cfg, rows)
    if out is not None:
        atomic_write_json(
            out / "compare.json",
            {"config": to_dict(cfg), "rows": rows, "winner": comparison.winner()},
        )
        atomic_write_text(
            out / "compare.md", comparison.markdown() + "\n\n" + comparison.verdict() + "\n"
        )
    return comparison
