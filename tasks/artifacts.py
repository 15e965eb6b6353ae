"""Prefect artifacts of a campaign: a table of its rounds and a markdown summary, keyed per workspace.

The keys (``alp-<workspace>-rounds``, ``alp-<workspace>-campaign``) stay the same from round to round,
so the Prefect UI (Artifacts) keeps the history of each.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from al_core.workspace import Workspace
from tasks.events import slug


def artifact_keys(ws: Workspace) -> dict[str, str]:
    base = f"alp-{slug(ws.name)}"
    return {"rounds": f"{base}-rounds", "campaign": f"{base}-campaign"}


def round_rows(summaries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for s in summaries:
        m = s.get("metrics") or {}
        hist = (s.get("batch_report") or {}).get("class_histogram")
        rows.append(
            {
                "round": s.get("tag"),
                "strategy": s.get("strategy"),
                "labels": s.get("n_labels"),
                "accuracy": round(m["test_accuracy"], 4) if "test_accuracy" in m else None,
                "macro_f1": round(m["test_macro_f1"], 4) if "test_macro_f1" in m else None,
                "queued": s.get("n_queued"),
                "batch_histogram": ", ".join(f"{k}:{v}" for k, v in hist.items()) if isinstance(hist, dict) else "",
                "champion": bool(s.get("champion")),
            }
        )
    return rows


def campaign_markdown(ws: Workspace, rows: list[dict[str, Any]]) -> str:
    trained = [r for r in rows if r["accuracy"] is not None]
    best = max(trained, key=lambda r: r["accuracy"]) if trained else None
    lines = [f"# Campaign `{ws.name}`", "", f"Workspace: `{ws.root}`", ""]
    lines.append(f"- rounds: {len(rows)} (latest {rows[-1]['round']})" if rows else "- rounds: none yet")
    lines.append(f"- labels: {rows[-1]['labels'] + (rows[-1]['queued'] or 0)} queued or labeled" if rows else "")
    if best:
        lines.append(f"- best test accuracy: **{best['accuracy']:.4f}** ({best['round']}, {best['strategy']})")
    lines += ["", "| round | strategy | labels | accuracy | queued |", "|---|---|---|---|---|"]
    for r in rows:
        acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "cold start"
        lines.append(f"| {r['round']} | {r['strategy']} | {r['labels']} | {acc} | {r['queued']} |")
    return "\n".join(lines) + "\n"


@task(name="publish-artifacts", retries=2, retry_delay_seconds=3)
def publish_round_artifacts(root: str, history: list[dict[str, Any]]) -> dict[str, str]:
    """The rounds table and the campaign summary, updated under their fixed keys."""
    ws = Workspace(root)
    keys = artifact_keys(ws)
    rows = round_rows(history)
    create_table_artifact(
        table=rows, key=keys["rounds"], description=f"alp rounds of {ws.name}: labels, accuracy, strategy, batch"
    )
    create_markdown_artifact(
        markdown=campaign_markdown(ws, rows), key=keys["campaign"], description=f"alp campaign {ws.name}"
    )
    return keys
