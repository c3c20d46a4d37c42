"""The comparison's table: <run dir>/domains_report.md (for people) and .json (for tools), atomically."""

from __future__ import annotations

from pathlib import Path

from lora_lab.artifacts import write_json, write_text
from lora_lab.domains.evaluation import OVERALL
from lora_lab.domains.jobs import ALL

REPORT_NAME = "domains_report"


def write_report(out_dir: Path, results: dict) -> str:
    """Write the JSON, then the markdown (the table a reader opens); return the markdown."""
    markdown = render(results)
    write_json(out_dir / f"{REPORT_NAME}.json", results)
    write_text(out_dir / f"{REPORT_NAME}.md", markdown)
    return markdown


def render(results: dict) -> str:
    """One row per domain plus the pooled row; acc / macro-F1 per model, then the costs."""
    baselines, domains, scores = results["baselines"], results["domains"], results["scores"]
    jobs, diff = results["jobs"], results["max_abs_logit_diff"]
    own_jobs = [jobs[f"own/{d}"] for d in domains]
    header = [
        "domain",
        "test rows",
        "own adapter",
        "all-domains adapter",
        *baselines,
        "own adapter bytes",
        "own train s",
        "ms/example own",
        "ms/example all",
        *(f"ms/example {b}" for b in baselines),
        "max abs logit diff own / all vs standalone",
    ]
    lines = [
        f"# Per-domain adapters: {results['dataset']} / {results['backbone']} / {results['regime']}",
        "",
        "Cells: test accuracy / macro-F1 on the domain's rows of the all-domains test split, the same rows "
        "for every model. own = the domain's adapter and all = one adapter trained on every domain, both "
        f"served by one base through set_adapter; {', '.join(baselines) or 'no baselines'}: trained on every domain.",
        "",
        "| " + " | ".join(header) + " |",
        "| --- | " + " | ".join("---:" for _ in header[1:]) + " |",
    ]
    for domain, job in zip(domains, own_jobs):
        lines.append(
            _row(
                domain,
                results["rows"][domain],
                scores[domain],
                baselines,
                job["adapter_bytes"],
                job["train_s"],
                f"{diff['own'][domain]:.1e} / {diff[ALL][domain]:.1e}",
            )
        )
    # Routing every row to its domain's adapter costs all the domain adapters together.
    lines.append(
        _row(
            f"{OVERALL} (own: routed by domain)",
            sum(results["rows"].values()),
            scores[OVERALL],
            baselines,
            sum(j["adapter_bytes"] for j in own_jobs),
            sum(j["train_s"] for j in own_jobs),
            f"{max(diff['own'].values()):.1e} / {max(diff[ALL].values()):.1e}",
        )
    )
    once = [
        f"all-domains adapter {jobs[f'{ALL}/{ALL}']['adapter_bytes']:,} bytes, {jobs[f'{ALL}/{ALL}']['train_s']:.1f} s"
    ]
    once += [
        f"{b} {jobs[f'baseline/{b}']['adapter_bytes']:,} bytes, {jobs[f'baseline/{b}']['train_s']:.1f} s"
        for b in baselines
    ]
    lines += [
        "",
        f"Trained once on every domain (adapter size, training time): {'; '.join(once)}.",
        f"Switching adapters (set_adapter + head): {results['switch_ms']:.3f} ms per switch "
        f"(mean of {results['switch_repeats']}).",
        "Latency: batched, length-sorted forward passes, ms per example, measured on a shared CPU; the "
        "adapters run unmerged through PEFT, baselines as their jobs saved them (merged when written). "
        f"Switch check: logits equal the standalone adapter's within {results['logit_tolerance']:g}.",
        "",
    ]
    return "\n".join(lines)


def _row(
    name: str, n_rows: int, cells: dict, baselines: list[str], adapter_bytes: int, train_s: float, diff: str
) -> str:
    columns = ["own", ALL, *baselines]
    quality = [f"{cells[c]['acc']:.4f} / {cells[c]['f1_macro']:.4f}" for c in columns]
    latency = [f"{cells[c]['ms_per_example']:.2f}" for c in columns]
    return (
        "| "
        + " | ".join([name, f"{n_rows:,}", *quality, f"{adapter_bytes:,}", f"{train_s:.1f}", *latency, diff])
        + " |"
    )
