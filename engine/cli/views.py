"""What the `engine` commands show: the run's tables and progress (a RunObserver drawn with rich), and the
store's status. Functions here only print what the library returns."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.cells import cell_len
from rich.console import Group
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars
from rich.table import Table
from rich.text import Text

from engine.api import LiveStatus, StoreStatus
from engine.cli.common import console, err
from engine.config import Config
from engine.llm.request_log import RoleTotals, add_totals
from engine.runtime.observer import RunObserver
from engine.runtime.pipeline import Pipeline
from engine.runtime.plan import Plan
from engine.runtime.run_state import aware
from engine.runtime.split import SplitReport
from engine.runtime.summary import left_out_text
from engine.sources.ingest import IngestReport
from engine.store.runs import RunRow

PROGRESS_EVERY_S = 5.0


class ConsoleObserver(RunObserver):
    """The run as `engine run` shows it: notes on stdout, warnings on stderr, transient bars while the inputs are
    probed and split, a bar per stage while the pipelines run (one plain line every few seconds when the output
    is not a terminal), and a table after each phase."""

    def __init__(self) -> None:
        self._bars: Bars | None = None
        self._tasks: dict[str, TaskID] = {}
        self._lines: _ProgressLines | None = None

    def note(self, message: str) -> None:
        console.print(message, highlight=False)

    def warning(self, message: str) -> None:
        err.print(f"warning: {message}", highlight=False)

    def phase_started(self, phase: str, total: int | None) -> None:
        if phase == "executing":
            if not console.is_terminal:  # a log file or a pipe: a plain line per stage every few seconds
                self._lines = _ProgressLines(PROGRESS_EVERY_S)
                return
            columns: tuple[Any, ...] = (
                TextColumn("{task.description:<18}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            self._bars = Bars(*columns, console=console)
        else:
            columns = (
                TextColumn(phase),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.description}"),
            )
            self._bars = Bars(*columns, console=console, transient=True)
            self._tasks[phase] = self._bars.add_task("", total=total)
        self._bars.start()

    def phase_total(self, phase: str, total: int) -> None:
        if self._bars is not None and phase in self._tasks:
            self._bars.update(self._tasks[phase], total=total)

    def phase_advanced(self, phase: str, item: str) -> None:
        if self._bars is not None and phase in self._tasks:
            self._bars.update(self._tasks[phase], advance=1, description=item[-60:])

    def stage_progress(self, stage: str, done: int, total: int) -> None:
        if self._lines is not None:
            self._lines.update(stage, done, total)
        elif self._bars is not None:
            if stage not in self._tasks:
                self._tasks[stage] = self._bars.add_task(stage, total=total)
            self._bars.update(self._tasks[stage], completed=done, total=total)

    def phase_ended(self, phase: str) -> None:
        if self._lines is not None:
            self._lines.flush()
            self._lines = None
        if self._bars is not None:
            self._bars.stop()
            self._bars = None
        self._tasks.clear()

    def ingested(self, report: IngestReport) -> None:
        _print_problems(report)
        _print_summary(report)
        _print_datasets(report)

    def split(self, report: SplitReport, cfg: Config) -> None:
        _print_split(report, cfg)

    def planned(self, plan: Plan, cfg: Config, pipelines: list[Pipeline], names: list[str]) -> None:
        _print_plan(plan, cfg, pipelines, names)

    def summarized(self, summary: dict) -> None:
        _print_run_summary(summary)


def print_status(st: StoreStatus) -> None:
    for sentence in st.closed_runs:
        console.print(sentence, highlight=False)
    # the URL on a line of its own, never wrapped by rich: in a table's title it broke over 3 lines at 80 columns;
    # a terminal narrower than it wraps it, and copying it still gives one line
    console.print(f"store: {st.store_url}", highlight=False, markup=False, soft_wrap=True)
    t = Table(title="Rows by table", title_justify="left")
    t.add_column("table")
    t.add_column("rows", justify="right")
    for name, n in st.tables.items():
        t.add_row(name, f"{n:,}")
    console.print(t)
    if st.stages is None:
        err.print(f"warning: {st.stages_error}; current versions not shown", highlight=False)
    else:
        vt = Table(title="Results by version (current = of the versions in use, named above)", title_justify="left")
        for col in ("result", "current", "outdated only"):
            vt.add_column(col, justify="left" if col == "result" else "right")
        for c in st.stages:
            vt.add_row(c.result, f"{c.current:,}", f"{c.outdated:,}")
        console.print(vt)
        if st.gated:
            gt = Table(title="Gated by mask quality (current results)", title_justify="left")
            gt.add_column("gate")
            gt.add_column("objects", justify="right")
            for gate, n in sorted(st.gated.items()):
                gt.add_row(gate, f"{n:,}")
            console.print(gt)
        judges = st.judging.get("judges") or {}
        if len(judges) > 1 or set(judges) - {"reviewer"}:  # a cascade: who decided, and at what cost
            jt = Table(title="Reviews by deciding judge (current results)", title_justify="left")
            for col in ("judge", "decided", "share", "kept", "discarded", "judging cost USD"):
                jt.add_column(col, justify="left" if col == "judge" else "right")
            for name, j in judges.items():
                cost = f"{j['cost_usd']:,.4f}" if "cost_usd" in j else "-"
                jt.add_row(
                    name, f"{j['decided']:,}", f"{j['share']:.0%}", f"{j['kept']:,}", f"{j['discarded']:,}", cost
                )
            console.print(jt)
        if st.left_out:
            lt = Table(title="Left out by the current results", title_justify="left")
            lt.add_column("what", overflow="fold")
            lt.add_column("count", justify="right")
            for reason, n in sorted(st.left_out.items()):
                lt.add_row(left_out_text(reason), f"{n:,}")
            console.print(lt)
    if st.runs:
        rt = Table(title="Recent runs", title_justify="left")
        for col in ("run id", "command", "state", "started", "videos", "new", "reason"):
            rt.add_column(col, overflow="fold", no_wrap=col == "run id")  # the id whole: it is what --run takes
        for r in st.runs:
            rt.add_row(
                r.id[:12],
                r.command,
                r.status,
                f"{r.started_at:%Y-%m-%d %H:%M:%S}",
                str(r.summary.get("videos", "")),
                str(r.summary.get("new_videos", "")),
                "" if r.status == "finished" else (r.reason or ""),
            )
        console.print(rt)
    if st.requests:
        _print_role_table("Requests by agent role, all runs", st.requests)
        if st.last_run is not None:
            last = st.last_run
            _print_role_table(
                f"Requests by agent role, run {last.id[:12]}", st.last_run_requests, last.summary.get("cache_hits", {})
            )
            _print_plan_against_actual(last, st.last_run_requests)
    else:
        console.print("no model requests yet")
    if st.failures:
        ft = Table(title=f"Failures ({st.failure_count}, newest first)", title_justify="left")
        for col in ("unit", "stage", "code", "attempts", "quarantined", "message"):
            ft.add_column(col, overflow="fold")
        for f in st.failures:
            ft.add_row(f.unit_id, f.stage, f.error_code, str(f.attempts), "yes" if f.quarantined else "no", f.message)
        console.print(ft)
    else:
        console.print("no failures")


class _ProgressLines:
    """Progress for output that is not a terminal: one line, every stage's units done of taken up, every few s."""

    def __init__(self, every_s: float):
        self.every_s, self.last, self.t0 = every_s, 0.0, time.monotonic()
        self.stages: dict[str, tuple[int, int]] = {}

    def update(self, stage: str, done: int, total: int) -> None:
        self.stages[stage] = (done, total)
        if time.monotonic() - self.last >= self.every_s:
            self.flush()

    def flush(self) -> None:
        if self.stages:
            self.last = time.monotonic()
            parts = "  ".join(f"{s} {d:,}/{t:,}" for s, (d, t) in self.stages.items())
            console.print(f"[{self.last - self.t0:6.0f} s] {parts}", highlight=False, markup=False)


def _judge_rows(r: dict) -> list[tuple[str, str]]:
    """Who decided the reviews (each judge of a cascade: share, kept / discarded, review cost per kept object) and
    where the scores came from."""
    judges, rows = r.get("judges") or {}, []
    cascade = r.get("cascade")
    if cascade:
        bands = ", ".join(f"{name} {lo:g}-{hi:g}" for name, (lo, hi) in cascade["bands"].items())
        note = "" if cascade["calibrated"] else " (default: not calibrated from audits)"
        rows.append(("  cascade bands" + note, bands))
    if cascade or len(judges) > 1:
        for name, j in judges.items():
            rows.append(
                (
                    f"    decided by {name} (kept / discarded)",
                    f"{j['decided']:,} ({j['share']:.0%}): {j['kept']:,} / {j['discarded']:,}",
                )
            )
    review_cost = sum(j.get("cost_usd", 0.0) for j in judges.values())
    if judges and r["kept"]:
        rows.append(("  judging cost USD per kept object", f"{review_cost / r['kept']:,.6f}"))
    sources = r.get("score_sources") or {}
    if sources:
        rows.append(("  judge scores from", ", ".join(f"{k} {v:,}" for k, v in sorted(sources.items()))))
    return rows


def _print_run_summary(r: dict) -> None:
    t = Table(title="Run summary", title_justify="left", show_header=False)
    t.add_column()
    t.add_column(justify="right")
    keep = f"{r['kept'] / r['reviewed']:.0%}" if r["reviewed"] else "-"
    # objects people annotated in a dataset are kept without a review (Current.kept): a keep rate of "0 (-)"
    # for them read as if the reviewer had kept nothing
    from_dataset = r.get("kept_from_dataset", 0)
    kept = [("  kept (reviewer keep rate)", f"{r['kept']:,} ({keep})")] if r["reviewed"] or not from_dataset else []
    if from_dataset:
        kept.append(("  kept (from the dataset, not reviewed)", f"{from_dataset:,}"))
    rows = [
        ("videos and clips (units)", f"{r['videos']:,}"),
        ("objects", f"{r['objects']:,}"),
        ("  grounded", f"{r['grounded']:,}"),
        *((("  gated (mask quality: no further call)", f"{sum(r['gated'].values()):,}"),) if r.get("gated") else ()),
        *((f"    by {gate}", f"{n:,}") for gate, n in sorted(r.get("gated", {}).items())),
        ("  reviewed", f"{r['reviewed']:,}"),
        *kept,
        *_judge_rows(r),
        *((f"samples: {k}", f"{v:,}") for k, v in sorted(r["samples"].items())),
        ("requests sent", f"{r['requests']:,}"),
        ("  answered from the cache (no request)", f"{sum(r.get('cache_hits', {}).values()):,}"),
        (
            "tokens in / out",
            f"{r['tokens_in']:,} / {r['tokens_out']:,}"
            + (f" (+{r['tokens_unknown']:,} requests unknown)" if r["tokens_unknown"] else ""),
        ),
        ("cost USD", f"{r['cost_usd']:,.4f}"),
        *((("  per kept object", f"{r['cost_per_kept_usd']:,.6f}"),) if r.get("cost_per_kept_usd") else ()),
        ("new samples (this run)", f"{r['new_results']:,}"),
        *((f"  left out: {left_out_text(k)}", f"{v:,}") for k, v in sorted(r.get("dropped", {}).items())),
        *(
            (("skipped inputs (not failures: see Skipped inputs)", f"{r['skipped_inputs']:,}"),)
            if r.get("skipped_inputs")
            else ()
        ),
        ("failures in this run (quarantined)", f"{r['failures']:,} ({r['quarantined']:,})"),
        ("  quarantined among these videos, all runs", f"{r['quarantined_in_store']:,}"),
    ]
    for k, v in rows:
        t.add_row(k, v)
    console.print(t)
    if r["roles"]:
        hits = r.get("cache_hits", {})
        _print_role_table(
            "Requests by agent role, this run",
            [
                RoleTotals(
                    role,
                    x["requests"],
                    x["ok"],
                    x["requests"] - x["ok"],
                    0,
                    x["tokens_unknown"],
                    x["tokens_in"],
                    x["tokens_out"],
                    x["cost_usd"],
                    0.0,
                )
                for role, x in sorted(r["roles"].items())
            ],
            hits,
        )


def _print_plan_against_actual(run: RunRow, actual: list[RoleTotals]) -> None:
    """The dry-run estimate of this run's calls and tokens beside what it really sent, per agent role."""
    plan = run.summary.get("plan") or {}
    if not plan:
        return
    by_role = {t.role: t for t in actual}
    title = (
        f"Plan against actual, run {run.id[:12]} (calls: estimated / requests sent, cache hits and retries included)"
    )
    cols = ("role", "planned calls", "requests", "planned tokens in", "tokens in", "planned cost USD", "cost USD")
    hits = run.summary.get("cache_hits", {})
    rows = []
    for role in sorted(set(plan) | {r for r in by_role if r != "probe"}):
        p, a = plan.get(role, {}), by_role.get(role)
        cells = [
            role,
            f"{p.get('calls', 0):,.0f}",
            f"{a.requests if a else 0:,}" + (f" (+{hits[role]:,} cached)" if hits.get(role) else ""),
            f"{p.get('tokens_in', 0):,.0f}",
            f"{a.tokens_in if a else 0:,}",
            f"{p.get('cost_usd', 0):,.4f}",
            f"{a.cost_usd if a else 0:,.4f}",
        ]
        rows.append((cells, False))
    _print_fitted(title, [(c, "left" if c == "role" else "right") for c in cols], rows)


def _fitted(
    title: str, columns: list[tuple[str, str]], rows: list[tuple[list[str], bool]], keys: int = 1
) -> list[Table]:
    """The table, or, when its cells cannot fit the console uncut (an 80-column terminal), several tables of the
    same rows, each with as many of the other columns as fit. The first `keys` columns name the row: every table
    repeats them, never wrapped, so no row is ambiguous (rich otherwise cut "annotator.static" to "annot…" and
    every number to "123,4…"). columns: (header, "left" | "right"); rows: (cells, a section line before it).
    Headers wrap between words; a column too wide even alone beside the keys (a long URL) folds: it is broken
    across lines, never cut. Column widths are set here: rich's own shrinking folds numbers that would fit."""

    def extent(i: int) -> tuple[int, int]:
        """(narrowest, widest) the column can be: its longest word (a key: its longest line), its longest line."""
        texts = [columns[i][0]] + [cells[i] for cells, _ in rows]
        longest = max(cell_len(line) for t in texts for line in t.splitlines() or [""])
        word = max((cell_len(w) for t in texts for w in t.split()), default=0)
        return (longest if i < keys else word), longest

    def widths(idx: list[int]) -> list[int] | None:
        """Widths that fit the console, headers wrapped before any cell; None when even the narrowest do not."""
        room = console.width - (3 * len(idx) + 1)  # the box's rules and a space either side of every cell
        low, high = zip(*(extent(i) for i in idx))
        if sum(low) > room:
            return None
        out = list(high)
        while sum(out) > room:  # narrow the column with the most to spare, a character at a time
            j = max(range(len(out)), key=lambda k: out[k] - low[k])
            out[j] -= 1
        return out

    def make(idx: list[int], part_title: str, w: list[int]) -> Table:
        t = Table(title=part_title, title_justify="left")
        for i, width in zip(idx, w):
            header, justify = columns[i]
            if i < keys:
                t.add_column(header, justify="left", no_wrap=True, width=width)
            else:
                t.add_column(header, justify="left" if justify == "left" else "right", overflow="fold", width=width)
        for cells, section in rows:
            if section:
                t.add_section()
            t.add_row(*(cells[i] for i in idx))
        return t

    key_idx, rest = list(range(keys)), list(range(keys, len(columns)))
    if (whole := widths(key_idx + rest)) is not None:
        return [make(key_idx + rest, title, whole)]
    groups: list[list[int]] = [[]]
    for i in rest:
        if groups[-1] and widths(key_idx + groups[-1] + [i]) is None:
            groups.append([i])
        else:
            groups[-1].append(i)
    more = title.split(" (", 1)[0] + " (continued)"  # without the first title's notes in parentheses
    tables = []
    for n, g in enumerate(groups):
        idx = key_idx + g
        w = widths(idx)
        if w is None:  # one column too wide beside the keys: it takes what is left, and folds
            w = [extent(i)[0] for i in key_idx]
            w += [max(4, console.width - (3 * len(idx) + 1) - sum(w))]
        tables.append(make(idx, title if n == 0 else more, w))
    return tables


def _print_fitted(title: str, columns: list[tuple[str, str]], rows: list[tuple[list[str], bool]]) -> None:
    for t in _fitted(title, columns, rows):
        console.print(t)


def _print_role_table(title: str, rows: list[RoleTotals], hits: dict[str, int] | None = None) -> None:
    cols = ["role", "requests", "ok", "failed", "cache hits", "tokens in", "tokens out", "tokens unknown", "cost USD"]
    out = []
    for x in [*rows, add_totals(rows)]:
        hit = sum((hits or {}).values()) if x.role == "total" else (hits or {}).get(x.role, 0)
        cells = [
            x.role,
            f"{x.requests:,}",
            f"{x.ok:,}",
            f"{x.failed:,}",
            f"{hit:,}" if hits is not None else "-",
            f"{x.tokens_in:,}",
            f"{x.tokens_out:,}",
            f"{x.tokens_unknown:,}",
            f"{x.cost_usd:,.4f}",
        ]
        out.append((cells, x.role == "total"))
    _print_fitted(title, [(c, "left" if c == "role" else "right") for c in cols], out)


def _print_split(split, cfg: Config) -> None:
    if cfg.split.detector == "none" or split.scanned + split.resumed + len(split.failed) == 0:
        return
    t = Table(title=f"Clips (split.detector = {cfg.split.detector})", title_justify="left", show_header=False)
    t.add_column(justify="left")
    t.add_column(justify="right")
    rows = [
        ("sources split in this run", split.scanned),
        ("sources split before (not decoded again)", split.resumed),
        ("sources not split (frame folders, datasets)", split.whole),
        ("clips found", split.clips),
        ("  kept", split.kept),
        *((f"  dropped: {reason.replace('_', ' ')}", n) for reason, n in sorted(split.dropped.items())),
        ("sources that could not be split", len(split.failed)),
    ]
    for k, v in rows:
        t.add_row(k, f"{v:,}")
    console.print(t)
    for rel, why in split.failed:
        err.print(f"warning: {rel}: not split: {why}", highlight=False)


def _print_problems(report: IngestReport) -> None:
    if not report.problems:
        return
    t = Table(title="Skipped inputs", title_justify="left")
    for col in ("input", "reason", "code"):
        t.add_column(col, overflow="fold")
    for p in report.problems:
        t.add_row(p.rel, p.reason, p.code)
    console.print(t)


def _print_summary(report: IngestReport) -> None:
    t = Table(title=f"Source {report.source}", title_justify="left", show_header=False)
    t.add_column(justify="left")
    t.add_column(justify="right")
    captioned = sum(v.caption is not None for v in report.videos)
    rows = [
        ("videos readable", len(report.videos)),
        ("  new in the store", report.new_videos),
        ("  already in the store", len(report.videos) - report.new_videos),
        ("  unchanged since stored (not probed again)", report.unchanged),
        ("  with a caption", captioned),
        ("  without (the Captioner writes one)", len(report.videos) - captioned),
        ("duplicates of another input (same bytes)", len(report.duplicates)),
        ("skipped (see above)", len(report.problems)),
        ("frames in readable videos", sum(v.info.num_frames for v in report.videos)),
    ]
    for k, v in rows:
        t.add_row(k, f"{v:,}")
    console.print(t)


def _print_datasets(report: IngestReport) -> None:
    """Each annotated dataset split the source holds videos of, as the adapter found it, and folders laid out like
    one that no adapter recognises."""
    from engine.sources.datasets import dataset_of, near_misses

    splits: dict[Any, int] = {}
    plain: list[Path] = []
    for v in report.videos:
        found = dataset_of(str(report.source / v.rel))
        if found is None:
            plain.append(report.source / v.rel)
        else:
            splits[found[0]] = splits.get(found[0], 0) + 1
    for adapter, here in splits.items():
        s = adapter.summary()
        t = Table(title=f"Dataset {s.dataset}, split {s.split} ({s.root})", title_justify="left", show_header=False)
        t.add_column(justify="left")
        t.add_column(justify="right")
        for k, v in (
            ("videos in the split", s.videos),
            ("  in this source", here),
            ("objects", s.objects),
            ("referring expressions", s.expressions),
            ("frames with masks", s.frames_with_masks),
            *((f"left out: {reason}", n) for reason, n in sorted(s.skipped.items())),
        ):
            t.add_row(k, f"{v:,}")
        console.print(t)
        for w in s.warnings:
            err.print(f"warning: {s.dataset} {s.split}: {w}", highlight=False)
    for w in near_misses(plain):
        err.print(f"warning: {w}", highlight=False)


def _print_plan(plan: Plan, cfg: Config, pipelines: list[Pipeline], names: list[str]) -> None:
    cols = [
        ("agent role", "left"),
        ("endpoint", "left"),
        ("model", "left"),
        ("calls", "right"),
        ("tokens in", "right"),
        ("tokens out", "right"),
        ("cost USD", "right"),
        ("basis", "left"),
    ]
    rows = []
    for a in plan.roles:
        cells = [
            a.role,
            getattr(a, "url", "") or a.endpoint,  # the URL the agent sends to (RoleEstimate.url), else its key
            cfg.endpoint(a.endpoint).model,
            f"{a.calls:,.0f}",
            f"{a.tokens_in:,.0f}",
            f"{a.tokens_out:,.0f}",
            f"{a.cost_usd:,.4f}",
            "measured" if a.measured else "estimate",
        ]
        rows.append((cells, False))
    if any("segmentor" in st.uses for p in pipelines for st in p.stages):
        seg = cfg.segmentor
        where = "GPU" if cfg.ray.resources["segmentor"].num_gpus > 0 else "CPU"
        cells = [
            "segmentor",
            seg.backend,
            seg.sam2_model if seg.backend == "grounded_sam2" else "-",
            "-",
            "-",
            "-",
            "-",
            f"{plan.mask_frames:,} object-frames on {where}",
        ]
        rows.append((cells, False))
    total = [
        "total",
        "",
        "",
        f"{plan.calls:,.0f}",
        f"{sum(a.tokens_in for a in plan.roles):,.0f}",
        f"{sum(a.tokens_out for a in plan.roles):,.0f}",
        f"{plan.cost_usd:,.4f}",
        "",
    ]
    rows.append((total, True))
    _print_fitted(f"Plan for a run of {', '.join(names)} (estimate)", cols, rows)
    # objects found, or annotated in a dataset, are counted; the rest estimated (plan.objects_per_video each)
    basis = f"est. {cfg.plan.objects_per_video:g}/video where not yet found" if plan.objects_estimated else "counted"
    dropped = f"   dropped before any call {plan.dropped:,}" if plan.dropped else ""
    console.print(
        f"videos {plan.videos:,} ({plan.videos_with_work:,} with work left)   frames to decode {plan.frames:,}   "
        f"objects ({basis}) {plan.objects:,.0f}{dropped}",
        highlight=False,
    )


def _live_lines(live: dict[str, Any], ended: bool) -> list[str]:
    """The snapshot's funnel, ETA and slowest stage, each where the snapshot has it (older runs' have less)."""
    lines = []
    if objects := live.get("objects"):
        samples = ", ".join(f"{t} {n:,}" for t, n in sorted(live.get("samples", {}).items())) or "none"
        lines.append(
            "objects: " + ", ".join(f"{state} {n:,}" for state, n in objects.items()) + f"; samples: {samples}"
        )
    pace = live.get("units_per_minute")
    left = sum(max(total - done, 0) for done, total in live.get("stages", {}).values())
    if not ended and pace and left:
        minutes = left / pace
        lines.append(
            f"ETA: about {int(minutes // 60)}h {int(minutes % 60):02d}m ({left:,} units left at {pace:g}/min)"
        )
    if seconds := live.get("stage_seconds"):
        stage, (n, total) = max(seconds.items(), key=lambda kv: kv[1][1])
        lines.append(f"slowest stage: {stage} ({total:,.1f} s over {n:,} units, {total / max(n, 1):.2f} s each)")
    return lines


def live_screen(st: LiveStatus) -> Group:
    """One screen of `engine status --follow`: the run, each stage's units, requests per role, failures."""
    run = st.run
    end = aware(run.finished_at) if run.finished_at else datetime.now(UTC)
    took = int((end - aware(run.started_at)).total_seconds())
    pace = run.live.get("units_per_minute")
    head = Text(
        f"run {run.id[:12]}  {run.command}  {run.status}  {took // 60}m {took % 60:02d}s"
        + (f"  {pace:g} units/min over the last minute" if pace is not None else ""),
        overflow="fold",
    )
    stages = Table(title="Units per stage", title_justify="left")
    for col in ("stage", "done", "total", ""):
        stages.add_column(col, justify="left" if col == "stage" else "right")
    for name, (done, total) in run.live.get("stages", {}).items():
        stages.add_row(name, f"{done:,}", f"{total:,}", f"{100 * done / total:.0f}%" if total else "-")
    requests = Table(title="Requests so far", title_justify="left")
    for col in ("role", "sent", "ok", "failed", "tokens in", "tokens out", "cost USD"):
        requests.add_column(col, justify="left" if col == "role" else "right", overflow="fold")
    for r in st.requests:
        requests.add_row(
            r.role, f"{r.requests:,}", f"{r.ok:,}", f"{r.failed:,}", f"{r.tokens_in:,}", f"{r.tokens_out:,}",
            f"{r.cost_usd:.4f}",
        )  # fmt: skip
    parts: list[Any] = [head, stages if run.live.get("stages") else Text("no stage has started yet"), requests]
    parts += [Text(line, overflow="fold") for line in _live_lines(run.live, ended=st.ended)]
    if run.failures:
        parts.append(Text("failed units: " + ", ".join(f"{code} {n:,}" for code, n in sorted(run.failures.items()))))
    if st.ended:
        parts.append(Text(f"{run.reason or run.status}   (exit code {st.exit_code})", overflow="fold"))
    return Group(*parts)
