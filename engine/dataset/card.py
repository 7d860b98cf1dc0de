"""The dataset card (README.md in the export folder) and its charts (PNG, matplotlib)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from engine.audit.stats import Confusion, wilson
from engine.dataset.export import ExportResult, counted, skip_reason_text
from engine.dataset.validate import Report
from engine.store import Store
from engine.store.audits import reviewer_verdict_counts
from engine.store.samples import split_clip_counts
from engine.store.summaries import left_out_text

TOP_CATEGORIES = 30
LENGTH_BINS = 40  # at most, over the longest answer's range; a bin is never narrower than one word


def length_bins(lengths: dict[str, list[int]]) -> list[float]:
    """Bin edges shared by every data type, whole words wide and centred on them: matplotlib's own bins for a
    type whose answers all have one length are 1/30 of a word wide, a bar too thin to see beside another
    type's range (or a sliver alone)."""
    values = [v for vs in lengths.values() for v in vs]
    lo, hi = min(values), max(values)
    step = max(1, -(-(hi - lo + 1) // LENGTH_BINS))  # ceiling division
    return [lo - 0.5 + step * i for i in range((hi - lo) // step + 2)]


def length_label(data_type: str, values: list[int]) -> str:
    """The chart's legend entry; a type whose answers all have one length says so, as its bar is a single one."""
    if len(set(values)) == 1:
        return _one_length(data_type, values)
    return f"{data_type} (n={len(values):,})"


def _one_length(data_type: str, values: list[int]) -> str:
    if len(values) == 1:
        return f"{data_type}: 1 answer, {counted(values[0], 'word')}"
    return f"{data_type}: all {len(values):,} answers have {counted(values[0], 'word')}"


def length_summary(lengths: dict[str, list[int]]) -> str:
    """One sentence for the card: each type's range and median of answer lengths, in words."""
    parts = []
    for data_type, values in sorted(lengths.items()):
        ordered = sorted(values)
        if ordered[0] == ordered[-1]:
            parts.append(_one_length(data_type, values))
        else:
            median = ordered[len(ordered) // 2]
            parts.append(f"{data_type}: {ordered[0]:,}-{ordered[-1]:,} words (median {median:,})")
    return "Answer lengths: " + "; ".join(parts) + "."


def _plots(result: ExportResult, charts: Path) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    charts.mkdir(exist_ok=True)
    made = []

    def save(fig: Any, title: str, name: str) -> None:
        fig.tight_layout()
        fig.savefig(charts / name, dpi=110)
        plt.close(fig)
        made.append((title, f"charts/{name}"))

    nouns = result.stats["nouns"].most_common(TOP_CATEGORIES)
    if nouns:
        fig, ax = plt.subplots(figsize=(8, max(3, 0.28 * len(nouns))))
        ax.barh([n for n, _ in reversed(nouns)], [c for _, c in reversed(nouns)], color="#3b7dd8")
        ax.set_xlabel("records")
        ax.set_title(f"Object categories (top {len(nouns)})")
        save(fig, "Object categories", "categories.png")
    lengths = result.stats["answer_words"]
    if lengths:
        fig, ax = plt.subplots(figsize=(7, 4))
        bins = length_bins(lengths)
        for data_type, values in sorted(lengths.items()):
            ax.hist(values, bins=bins, alpha=0.6, label=length_label(data_type, values))
        if bins[-1] - bins[0] < 11:  # a few words in all: widen the axis so a one-word bar is not the whole plot
            mid = (bins[0] + bins[-1]) / 2
            ax.set_xlim(max(0.0, mid - 5.5), max(0.0, mid - 5.5) + 11)
        ax.set_xlabel("answer length, words")
        ax.set_ylabel("records")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))  # counts: no "3.5 records" ticks on a small export
        ax.legend()
        ax.set_title("Description and answer lengths")
        save(fig, "Answer lengths", "lengths.png")
    modes = result.stats["modes"]
    if modes:
        types = sorted({t for t, _ in modes})
        fig, ax = plt.subplots(figsize=(6, 3.5))
        single = [modes[(t, "single")] for t in types]
        multi = [modes[(t, "multi")] for t in types]
        ax.bar(types, single, label="single-frame", color="#6aa84f")
        ax.bar(types, multi, bottom=single, label="multi-frame", color="#e69138")
        ax.set_ylabel("records")
        ax.legend()
        ax.set_title("Single- vs multi-frame records")
        save(fig, "Single- vs multi-frame", "modes.png")
    return made


def _review_and_audit(store: Store) -> tuple[list[str], Confusion | None]:
    from engine.audit.sampling import audit_stats

    verdicts = reviewer_verdict_counts(store)
    kept, dropped = verdicts.get(True, 0), verdicts.get(False, 0)
    lines = []
    if kept + dropped:
        lo, hi = wilson(kept, kept + dropped)
        lines.append(
            f"- Reviewer keep rate: {kept / (kept + dropped):.1%} ({kept:,} of "
            f"{counted(kept + dropped, 'reviewed object')}; 95% Wilson interval {lo:.1%}-{hi:.1%})"
        )
    st = audit_stats(store)  # one label per audited item (majority of its auditors)
    c = st.sample
    if not c.n:
        return lines + ["- Audits: none yet (`engine audit sample`, then the review UI)."], None
    p_lo, p_hi = wilson(c.tp, c.tp + c.fp)
    a_lo, a_hi = wilson(c.tp + c.tn, c.n)
    lines += [
        f"- Audits: {counted(c.n, 'item')} ({counted(st.decisions, 'decision')}, label by {st.rule}): "
        f"TP {c.tp}, FP {c.fp}, "
        f"FN {c.fn}, TN {c.tn} (sample ratios)",
        f"- Precision {c.precision:.2f} (95% Wilson {p_lo:.2f}-{p_hi:.2f}), accuracy {c.accuracy:.2f} "
        f"({a_lo:.2f}-{a_hi:.2f}), recall {c.recall:.2f}, F1 {c.f1:.2f}",
    ]
    return lines, c


def _clips(store: Store, lineage: str | None) -> list[str]:
    """What the split found in the store, at the configured split's lineage (docs/clips.md)."""
    if lineage is None:
        return ['- Sources were not split into clips (`split.detector = "none"`).']
    rows, sources = split_clip_counts(store, lineage)
    if not rows:
        return ["- No source was split into clips at this configuration's split version."]
    kept = sum(n for k, _, n, _ in rows if k)
    dropped = sorted(((r, n) for k, r, n, _ in rows if not k), key=lambda x: -x[1])
    clips = sum(n for _, _, n, _ in rows)
    lines = [f"- {counted(sources, 'source video')} split into {counted(clips, 'clip')}; {kept:,} kept."]
    if dropped:
        lines.append("- Dropped: " + ", ".join(f"{(r or 'other').replace('_', ' ')} {n:,}" for r, n in dropped) + ".")
    return lines


def _judging_lines(judging: dict[str, Any] | None) -> list[str]:
    """The share of reviews each judge decided, where the scores came from, and the cost per kept object."""
    if not judging or not judging.get("judges"):
        return []
    judges, kept = judging["judges"], judging["kept"]
    lines = [
        f"- Decided by {name}: {j['share']:.1%} ({j['decided']:,}: kept {j['kept']:,}, discarded {j['discarded']:,})"
        + (f", judging cost USD {j['cost_usd']:.4f}" if "cost_usd" in j else "")
        for name, j in judges.items()
    ]
    sources = judging.get("score_sources") or {}
    if sources:
        lines.append(
            "- Judges' scores: "
            + ", ".join(
                f"{n:,} from {'token probabilities' if k == 'tokens' else k}" for k, n in sorted(sources.items())
            )
        )
    if kept:
        review = sum(j.get("cost_usd", 0.0) for j in judges.values())
        lines.append(
            f"- Cost per kept object: USD {judging['cost_usd'] / kept:.6f} (all requests in the store), "
            f"of which judging USD {review / kept:.6f}"
        )
    return lines


def write_card(
    store: Store,
    result: ExportResult,
    report: list[Report],
    fmt: str,
    split_lineage: str | None = None,
    left_out: dict[str, int] | None = None,
    gated: dict[str, int] | None = None,
    judging: dict[str, Any] | None = None,
) -> Path:
    """split_lineage: the configured split's (engine/runtime/split.py), None when sources are not split;
    left_out: what the current results' units left out, by reason (engine/store/summaries.py left_out); gated:
    objects a masklet quality gate stopped, by gate; judging: who decided the current reviews and at what cost
    (`judges` from engine/store/summaries.py judge_shares, `kept`, `cost_usd` of every request in the store)."""
    charts = _plots(result, result.out / "charts")
    review_lines, _ = _review_and_audit(store)
    counts = result.counts
    types = sorted({t for t, _ in counts})
    lines = [
        "# Dataset card",
        "",
        f"Object-level video instruction data in the VideoRefer-700K record format (`{fmt}`), exported by "
        "videorefer-engine. Each record is one single-turn conversation about the objects marked `<region>`, "
        "with their masks as COCO RLE keyed by frame index.",
        "",
        "## Records",
        "",
        "| data type | train | val | total |",
        "|---|---:|---:|---:|",
    ]
    for t in types:
        tr, va = counts[(t, "train")], counts[(t, "val")]
        lines.append(f"| {t} | {tr:,} | {va:,} | {tr + va:,} |")
    qa = result.stats["qa_types"]
    if qa:
        lines += ["", "QA types: " + ", ".join(f"{k} {v:,}" for k, v in sorted(qa.items())) + "."]
    modes = result.stats["modes"]
    lines += [
        "",
        "Single- vs multi-frame: "
        + ", ".join(f"{t} {modes[(t, 'single')]:,} / {modes[(t, 'multi')]:,}" for t in types)
        + ".",
    ]
    lengths = result.stats["answer_words"]
    if lengths:
        lines += ["", length_summary(lengths)]
    if result.skipped:
        lines += ["", "Left out:"] + [
            f"- {counted(v, f'{t} sample')}: {skip_reason_text(reason)}"
            for (t, reason), v in sorted(result.skipped.items())
        ]
    if gated:
        lines += ["", "Objects stopped by a masklet quality gate before any description or review:"] + [
            f"- {gate}: {n:,}" for gate, n in sorted(gated.items())
        ]
    if left_out:
        lines += ["", "Not made by the pipelines (from the current results):"] + [
            f"- {left_out_text(reason)}: {n:,}" for reason, n in sorted(left_out.items())
        ]
    if result.warnings:
        lines += [""] + [f"Warning: {w}." for w in result.warnings]
    lines += ["", "## Clips", "", *_clips(store, split_lineage)]
    if result.video_root is not None:
        lines.append(
            f"- `videos/` holds each exported clip as a file of its own ({result.clip_files:,} written) "
            "and links to whole videos: train with it as the video folder."
        )
    lines += ["", "## Review and audit", "", *review_lines, *_judging_lines(judging), "", "## Validation", ""]
    for r in report:
        verdict = "no defects" if r.ok else ", ".join(f"{k} {v}" for k, v in sorted(r.defects.items()))
        lines.append(f"- `{r.path.name}`: {counted(r.records, 'record')}, {verdict}")
    if charts:
        lines += ["", "## Charts", ""] + [f"![{title}]({path})" for title, path in charts]
    lines += [
        "",
        "Provenance: `*.provenance.jsonl` beside each file has one line per record (models and prompt "
        "versions of every agent involved, reviewer verdict and confidence, audits, engine version, the "
        "video's content hash). `manifest.json` holds the filters, the configuration and the counts.",
        "",
    ]
    path = result.out / "README.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
