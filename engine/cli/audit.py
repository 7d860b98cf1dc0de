"""`engine audit ...` and `engine review`: the human audit of the Reviewer, from the command line."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.table import Table

from engine.api import TooFewAudits
from engine.cli.common import (
    ConfigOpt,
    DataDirOpt,
    DbOpt,
    RunOpt,
    SetOpt,
    _config,
    _engine,
    _reader,
    _store,
    console,
    err,
)

audit_app = typer.Typer(
    help="Audit the Reviewer: auditors, samples, statistics.", no_args_is_help=True, rich_markup_mode=None
)

T = TypeVar("T")


@audit_app.command("add-auditor", short_help="Create an auditor and print their sign-in token.")
def audit_add_auditor(
    name: str, config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None, set_: SetOpt = None
) -> None:
    """Create an auditor (or give them a new token) and print the token once; it is stored hashed. Names are
    NFKC-normalised; markup, mixed scripts and look-alikes of a name in use are refused."""
    from engine.audit.names import confusable_with, normalise_name
    from engine.audit.sampling import add_auditor
    from engine.store.audits import auditor_names_in_use

    try:
        name = normalise_name(name)
    except ValueError as e:
        err.print(f"error: {e}", highlight=False, markup=False, soft_wrap=True)  # one line, however long the name
        raise typer.Exit(2) from None
    store = _store(_config(config, set_, data_dir=data_dir, database_url=database_url))
    in_use = auditor_names_in_use(store)  # removed auditors' names too: their audits stay under them
    other = confusable_with(name, in_use)
    if other is not None:
        err.print(
            f"error: auditor name {name!r} looks like auditor {other!r} (look-alike letters): choose another",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
        raise typer.Exit(2)
    token = add_auditor(store, name)
    console.print(f"auditor {name}: token {token}\n(shown once; sign in to `engine review` with it)", highlight=False)


@audit_app.command("remove-auditor", short_help="Remove an auditor: their sessions end, their audits stay.")
def audit_remove_auditor(
    name: str, config: ConfigOpt = None, data_dir: DataDirOpt = None, database_url: DbOpt = None, set_: SetOpt = None
) -> None:
    """Remove an auditor. A signed-in session of theirs ends at its next request; their decisions are kept."""
    from engine.audit.names import lookup_key
    from engine.audit.sampling import remove_auditor

    name = lookup_key(name)  # found as add-auditor stored it (NFKC)
    if not remove_auditor(_store(_config(config, set_, data_dir=data_dir, database_url=database_url)), name):
        err.print(f"error: no auditor named {name!r}", highlight=False)
        raise typer.Exit(1)
    console.print(f"auditor {name} removed; their sessions end now, their audits stay", highlight=False)


@audit_app.command("export", short_help="People's audits as JSONL or CSV, with notes and reason codes.")
def audit_export(
    fmt: Annotated[str, typer.Option("--format", help="jsonl | csv")] = "jsonl",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="file to write (default: standard output)")] = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history",
            help="every decision and undo, in order, not only the current decision of each item and auditor",
        ),
    ] = False,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    set_: SetOpt = None,
) -> None:
    """Export audits (example: engine audit export --format csv -o audits.csv)."""
    from engine.audit.export import audit_rows, write

    if fmt not in ("jsonl", "csv"):
        err.print(f"error: --format {fmt!r}: choose jsonl or csv", highlight=False)
        raise typer.Exit(2)
    rows = audit_rows(_store(_config(config, set_, data_dir=data_dir, database_url=database_url)), history=history)
    if out is None:
        write(rows, fmt, sys.stdout, history)
    else:
        with out.open("w", encoding="utf-8", newline="") as fh:
            write(rows, fmt, fh, history)
        err.print(f"wrote {len(rows):,} {'events' if history else 'audits'} to {out}", highlight=False)
    if not rows:  # an empty export says so, and is not a success (as engine export's)
        err.print("no audits in the store", highlight=False)
        raise typer.Exit(4)


@audit_app.command("sample", short_help="Draw audit items stratified by the Reviewer's verdict.")
def audit_sample(
    kept: Annotated[int, typer.Option("--kept", min=0)] = 100,
    discarded: Annotated[int, typer.Option("--discarded", min=0)] = 100,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    by: Annotated[str | None, typer.Option("--by", help="extra strata: category or size")] = None,
    near_threshold: Annotated[
        int | None,
        typer.Option(
            "--near-threshold",
            min=1,
            help="instead: N items where the decision is most uncertain, around the newest "
            "calibration's threshold (their sampling weights are recorded)",
        ),
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    set_: SetOpt = None,
    run: RunOpt = None,
) -> None:
    """Draw audit items stratified by the Reviewer's verdict; records each stratum's population."""
    if by not in (None, "category", "size"):
        err.print("error: --by takes category or size", highlight=False)
        raise typer.Exit(2)
    eng = _reader(config, set_, run, data_dir, database_url)
    if near_threshold:
        try:
            report = eng.audit_near_threshold(near_threshold, seed)
        except ValueError as e:
            err.print(f"error: {e}", highlight=False)
            raise typer.Exit(2) from None
        if not report:  # nothing drawn is not a success
            err.print("no undrawn item is left in the cells around the threshold", highlight=False)
            raise typer.Exit(1)
    else:
        report = eng.audit_sample(kept, discarded, seed, by)
    if not any(pop for pop, _ in report.values()):  # nothing to draw from is not a success: say why
        err.print(
            "nothing to sample: the results used hold no Reviewer decision (run the detailed, short or qa "
            "pipeline on videos first; objects from an annotated dataset are never reviewed)",
            highlight=False,
        )
        raise typer.Exit(4)
    t = Table(title="Audit sample", title_justify="left")
    for col in ("stratum", "population", "newly drawn"):
        t.add_column(col, justify="left" if col == "stratum" else "right")
    for key, (pop, new) in sorted(report.items()):
        t.add_row(key, f"{pop:,}", f"{new:,}")
    console.print(t)


@audit_app.command("calibrate", short_help="The Reviewer's keep threshold for a target precision, from the audits.")
def audit_calibrate(
    target: Annotated[float, typer.Option("--target-precision", min=0.5, max=1.0)] = 0.95,
    plot_path: Annotated[Path | None, typer.Option("--plot", help="write the precision-yield curve (PNG)")] = None,
    rule: Annotated[str, typer.Option("--rule", help="majority, first or adjudicator:NAME")] = "majority",
    score: Annotated[
        str,
        typer.Option(
            "--score",
            help="tokens (the answer token's probability), verbal (the verbalised confidence), or auto: tokens "
            "where every current review has one",
        ),
    ] = "auto",
    cascade: Annotated[
        bool, typer.Option("--cascade", help="choose the bands of the [[review.cascade]] judges instead")
    ] = False,
    apply: Annotated[
        bool, typer.Option("--apply", help="--cascade: write the bands into the config file's [[review.cascade]]")
    ] = False,
    min_yield: Annotated[
        float,
        typer.Option(
            "--min-yield",
            min=0.0,
            max=1.0,
            help="--cascade: keep at least this share of the reviewed objects (the cheapest bands per kept object "
            "may keep fewer than the strong judge alone)",
        ),
    ] = 0.0,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    set_: SetOpt = None,
    run: RunOpt = None,
) -> None:
    """Choose the keep threshold on the Reviewer's same-object score P(same object) that reaches the target
    precision; print its precision, recall and yield with intervals weighted by stratum, and record it for
    `engine export --calibrated`. With --cascade: the band of each cascade judge that reaches the target at the
    least expected cost per kept object, with the share each judge decides."""
    from engine.audit.calibrate import plot

    eng = _reader(config, set_, run, data_dir, database_url)
    if cascade:
        _calibrate_cascade(eng, target, rule, apply, min_yield)
        return
    if apply:
        err.print("error: --apply writes a cascade's bands: give it with --cascade", highlight=False)
        raise typer.Exit(2)
    cal = _calibration(lambda: eng.calibrate(target, rule, score))
    console.print(
        "score: "
        + (
            "the judges' answer-token probability (log-probabilities)"
            if cal.score == "tokens"
            else "the judges' verbalised confidence"
        ),
        highlight=False,
    )
    if cal.threshold is None:
        best = max((p for _, p, _ in cal.curve if p == p), default=0.0)
        err.print(
            f"no threshold reaches precision {target:.2f} (the best estimate is {best:.2f}); the highest "
            "audited score is recorded",
            highlight=False,
        )
    p, r = cal.precision, cal.recall
    console.print(
        f"threshold {cal.threshold if cal.threshold is not None else float('nan'):.3f} on the same-object "
        f"score, from {cal.audited:,} audited items (label rule: {rule})",
        highlight=False,
    )
    console.print(
        f"  precision {p.value:.3f} (95% {p.low:.3f}-{p.high:.3f})   recall {r.value:.3f} "
        f"(95% {r.low:.3f}-{r.high:.3f})   yield {cal.yield_:.3f} ({cal.admitted:,} objects; the Reviewer "
        f"kept {cal.kept_by_reviewer:,})",
        highlight=False,
    )
    if cal.readmitted:
        console.print(
            f"  {cal.readmitted:,} of them the Reviewer discarded: they have no detailed description or "
            "samples, so `engine export --calibrated` cannot include them until they are refined",
            highlight=False,
        )
    if plot_path is not None:
        plot(cal, plot_path)
        console.print(f"curve: {plot_path}", highlight=False)
    if cal.threshold is None:  # recorded, but there is nothing to apply
        raise typer.Exit(1)


def _calibration(compute: Callable[[], T]) -> T:
    """A calibration, or the exit: 1 for too few audits, 2 for a setting it cannot take (rule, score, cascade)."""
    try:
        return compute()
    except TooFewAudits as e:
        err.print(f"error: {e}", highlight=False)
        raise typer.Exit(1) from None
    except ValueError as e:
        err.print(f"error: {e}", highlight=False)
        raise typer.Exit(2) from None


def _calibrate_cascade(eng, target: float, rule: str, apply: bool, min_yield: float) -> None:
    from engine.audit.cascade import describe

    cal = _calibration(lambda: eng.calibrate_cascade(target, rule, min_yield=min_yield))
    console.print(
        f"cascade bands for precision {target:.2f}, from {cal.audited:,} audited items (label rule: {rule}):",
        highlight=False,
    )
    for line in describe(cal):
        console.print(f"  {line}", highlight=False, markup=False)
    if cal.bands is None:
        if apply:
            err.print("--apply: nothing written, since no bands reach the target", highlight=False)
        raise typer.Exit(1)
    if apply:
        try:
            path = eng.apply_bands(cal.bands)
        except ValueError as e:
            err.print(f"error: --apply: {e}", highlight=False)
            raise typer.Exit(2) from None
        console.print(
            f"written to [[review.cascade]] in {path}: the next run re-decides the reviews from the judges' cached "
            "answers",
            highlight=False,
            markup=False,
        )


@audit_app.command("gates", short_help="Masklet quality-gate thresholds learnt from audits (mask wrong vs correct).")
def audit_gates(
    min_removal: Annotated[
        float, typer.Option("--min-removal", min=0.0, max=1.0, help="share of bad masks to remove at least")
    ] = 0.5,
    max_loss: Annotated[
        float, typer.Option("--max-loss", min=0.0, max=1.0, help="share of good masks to lose at most")
    ] = 0.05,
    rule: Annotated[str, typer.Option("--rule", help="majority, first or adjudicator:NAME")] = "majority",
    apply: Annotated[
        bool, typer.Option("--apply", help="write the thresholds into the config file's [gates]")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="the bootstrap's seed")] = 0,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    set_: SetOpt = None,
    run: RunOpt = None,
) -> None:
    """From audited items marked "mask wrong or drifting" against items judged correct, weighted by stratum as the
    audit statistics are: how well each gate's metric separates them, and thresholds that remove at least
    --min-removal of bad masks while losing at most --max-loss of good ones, with bootstrap intervals and the
    Reviewer requests they would save. Exit 1 when there are too few audits or the target is not met."""
    eng = _reader(config, set_, run, data_dir, database_url)
    try:
        g = eng.audit_gates(min_removal, max_loss, rule, seed)
    except ValueError as e:
        err.print(f"error: --rule: {e}", highlight=False)
        raise typer.Exit(2) from None
    console.print(f"{g.n_bad:,} audited masks marked wrong or drifting, {g.n_good:,} judged correct", highlight=False)
    if g.needed:
        err.print(f"not enough audits to suggest thresholds: {g.needed}", highlight=False)
        raise typer.Exit(1)
    t = Table(title="Each gate alone (AUC: 0.5 separates nothing, 1 perfectly)", title_justify="left")
    for col in ("gate", "AUC", "threshold", "removes bad", "loses good"):
        t.add_column(col, justify="left" if col == "gate" else "right")
    for f in g.alone:
        t.add_row(f.key, f"{f.auc:.2f}", f"{f.threshold:.3f}", f"{f.removal:.0%}", f"{f.loss:.0%}")
    console.print(t)
    current = eng.config.gates.thresholds()
    s = Table(title=f"Suggested gates (remove >= {min_removal:.0%} of bad, lose <= {max_loss:.0%} of good)",
              title_justify="left")  # fmt: skip
    for col in ("gate", "now", "suggested", "95% interval"):
        s.add_column(col, justify="left" if col == "gate" else "right")
    for key, value in g.thresholds.items():
        lo, hi = g.intervals.get(key, (float("nan"), float("nan")))
        s.add_row(key, f"{current[key]:g}", f"{value:.3f}", f"{lo:.3f}-{hi:.3f}")
    console.print(s)
    assert g.removal is not None and g.loss is not None
    r, loss = g.removal, g.loss
    console.print(
        f"  removes {r.value:.1%} of bad masks (95% {r.low:.1%}-{r.high:.1%}), loses {loss.value:.1%} of good ones "
        f"(95% {loss.low:.1%}-{loss.high:.1%}), estimated for the population ({r.method})",
        highlight=False,
    )
    calls = 2 if eng.config.runtime.reviewer_mode == "paper" else 1
    console.print(
        f"  of the {g.pool:,} current reviewed objects they would stop {g.gated_in_pool:,}: "
        f"{g.gated_in_pool * calls:,} Reviewer requests ({calls} each) and {2 * g.gated_in_pool:,} Annotator "
        "requests fewer on a run over such videos",
        highlight=False,
    )
    console.print(
        "  (audited items passed the gates of their run: what those already stopped is not seen here)", highlight=False
    )
    if apply and not g.meets_target:
        err.print("--apply: nothing written, since the suggestion misses the target", highlight=False)
    elif apply:
        try:
            path = eng.apply_gates(g.thresholds)
        except ValueError as e:
            err.print(f"error: --apply: {e}", highlight=False)
            raise typer.Exit(2) from None
        console.print(f"written to [gates] in {path}: the next run re-gates from the stored masklets", highlight=False)
    if not g.meets_target:
        err.print(f"the target removal {min_removal:.0%} is not reached within the loss allowed", highlight=False)
        raise typer.Exit(1)


@audit_app.command("stats", short_help="Confusion matrix, metrics with intervals, population estimates.")
def audit_stats_cmd(
    rule: Annotated[
        str,
        typer.Option(
            "--rule",
            help="an item's label where several auditors labelled it: majority (a tie goes to the first "
            "auditor), first, or adjudicator:NAME (NAME's label where given, else majority)",
        ),
    ] = "majority",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    set_: SetOpt = None,
) -> None:
    """Confusion matrix over audited items, the paper's metrics with 95% intervals, population estimates, kappa per
    pair of auditors."""
    from engine.audit.sampling import KAPPA_MIN_ITEMS

    try:
        st = _engine(_config(config, set_, data_dir=data_dir, database_url=database_url)).audit_stats(rule)
    except ValueError as e:
        err.print(f"error: --rule: {e}", highlight=False)
        raise typer.Exit(2) from None
    c = st.sample
    console.print(
        f"audited items: {st.items:,} ({st.decisions:,} decisions; {st.multi:,} items labelled by several "
        f"auditors, label by rule: {st.rule})\npools: kept {st.kept_population:,}, discarded "
        f"{st.discarded_population:,}",
        highlight=False,
    )
    m = Table(title="Confusion matrix (audited items)", title_justify="left")
    for col in ("", "person: correct", "person: wrong"):
        m.add_column(col)
    m.add_row("reviewer kept", f"TP {c.tp}", f"FP {c.fp}")
    m.add_row("reviewer discarded", f"FN {c.fn}", f"TN {c.tn}")
    console.print(m)
    t = Table(title="Metrics", title_justify="left")
    for col in ("metric", "sample ratio (paper)", "population estimate", "95% interval", "method"):
        t.add_column(col)
    if not st.items:  # a ratio of nothing is no number: "-", never 0.00 in 0.00-1.00
        for name in ("precision", "recall", "accuracy", "F1"):
            t.add_row(name, "-", "-", "-", "no audits yet")
        console.print(t)
        console.print(
            "no audits yet: draw items with `engine audit sample`, then judge them in `engine review`", highlight=False
        )
        return
    fmt = lambda e: f"{e.low:.2f}-{e.high:.2f}" if e else "-"  # noqa: E731
    t.add_row("precision", f"{c.precision:.2f}", f"{st.precision.value:.2f}", fmt(st.precision), st.precision.method)
    for name, sample_value, est in (
        ("recall", c.recall, st.population_recall),
        ("accuracy", c.accuracy, st.population_accuracy),
        ("F1", c.f1, st.population_f1),
    ):
        t.add_row(
            name,
            f"{sample_value:.2f}",
            f"{est.value:.2f}" if est else "-",
            fmt(est),
            est.method if est else "needs audits in both strata",
        )
    console.print(t)
    console.print(
        f"sample accuracy 95% Wilson: {st.sample_accuracy.low:.2f}-{st.sample_accuracy.high:.2f}", highlight=False
    )
    for k in st.kappas:
        value = f"{k.kappa:.2f}" if k.kappa is not None else f"too few items (under {KAPPA_MIN_ITEMS})"
        console.print(f"Cohen's kappa, {k.a} and {k.b}, over the {k.n} items both labelled: {value}", highlight=False)
    if not st.kappas:
        console.print("Cohen's kappa: needs two auditors on the same items", highlight=False)
    console.print(
        f"further kept-stratum audits for a precision interval of ±0.05: {st.more_for_precision_05}", highlight=False
    )
    a = Table(title="Each auditor's own decisions (on the items they labelled)", title_justify="left")
    for col in ("auditor", "decisions", "TP", "FP", "FN", "TN", "Reviewer accuracy by their labels"):
        a.add_column(col)
    for name, pc in sorted(st.per_auditor.items()):
        a.add_row(name, f"{pc.n}", f"{pc.tp}", f"{pc.fp}", f"{pc.fn}", f"{pc.tn}", f"{pc.accuracy:.2f}")
    if st.per_auditor:
        console.print(a)


def review(
    host: Annotated[
        str, typer.Option("--host", help="address to bind; 127.0.0.1 keeps it on this machine")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8765,
    reveal: Annotated[
        str,
        typer.Option(
            "--reveal",
            help="after: show the Reviewer's verdict, confidence, rationale and detailed description once "
            "the auditor has decided (never before: blind judging); never: not even then",
        ),
    ] = "after",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    database_url: DbOpt = None,
    set_: SetOpt = None,
    run: RunOpt = None,
) -> None:
    """Serve the audit web UI (example: engine review --port 8765)."""
    import importlib

    import uvicorn

    # engine/ never imports review_ui/ statically (imports run review_ui -> engine)
    create_app = importlib.import_module("review_ui.app").create_app
    if reveal not in ("after", "never"):
        err.print(f"error: --reveal {reveal!r}: choose after or never", highlight=False)
        raise typer.Exit(2)
    eng = _reader(config, set_, run, data_dir, database_url)
    if not _loopback(host):
        err.print(
            f"warning: --host {host} serves the review UI beyond this machine over plain HTTP: sign-in tokens "
            "and session cookies would cross the network in clear. Keep 127.0.0.1 and reach it through an SSH "
            "tunnel (ssh -L 8765:127.0.0.1:8765 host), or put a TLS proxy in front (e.g. caddy reverse-proxy "
            f"--from review.example.org --to 127.0.0.1:{port}).",
            highlight=False,
        )
    console.print(
        f"review UI on http://{host}:{port}/ (sign in with a token from `engine audit add-auditor`)", highlight=False
    )
    uvicorn.run(
        create_app(eng.store, reveal=reveal, current=eng.view().current), host=host, port=port, log_level="warning"
    )


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
