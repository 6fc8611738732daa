"""The ``nbp`` command line: one group, one subcommand per stage.

Each subcommand is thin: it loads the config, names the workspace and calls one
function of the stage's package. ``NbpError`` is caught once here: one line on
stderr and the error's exit code (1, or 2 for a broken data contract); the
traceback shows only with ``--debug``. A failed Spark job is reported the same way (exit 1).
"""

from __future__ import annotations

import functools
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from nbp import telemetry
from nbp.config import Config, load_config
from nbp.errors import ConfigError, NbpError
from nbp.log import configure
from nbp.workspace import Workspace

log = logging.getLogger(__name__)


class Ctx:
    """What every subcommand receives."""

    def __init__(self, cfg: Config, ws: Workspace, debug: bool) -> None:
        self.cfg = cfg
        self.ws = ws
        self.debug = debug


def common(f: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--config``, ``--log-level`` and ``--debug`` to a subcommand and build its Ctx."""

    @click.option(
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help="YAML overlay merged over configs/*.yaml.",
    )
    @click.option(
        "--log-level",
        default="INFO",
        show_default=True,
        type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    )
    @click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
    @functools.wraps(f)
    def wrapper(config_path: str | None, log_level: str, debug: bool, **kw: Any) -> Any:
        configure(log_level)
        try:
            ctx = Ctx(load_config(config_path), Workspace.from_env(), debug)
            return f(ctx, **kw)
        except NbpError as e:
            if debug:
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except Exception as e:  # only a Spark job's failure is reported here; anything else is re-raised
            if debug or not spark_failure(e):
                raise
            click.echo(f"error: spark job failed: {spark_failure(e)} (--debug shows the trace)", err=True)
            sys.exit(1)

    return wrapper


def spark_failure(e: BaseException) -> str:
    """The first line of a Spark job's error (``compute.engine: spark``: the JVM's or a Python
    worker's), or "" when ``e`` did not come from Spark."""
    if not type(e).__module__.startswith(("pyspark", "py4j")):
        return ""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    cause = [ln for ln in lines if ln.startswith("Caused by:") or "Error:" in ln or "Exception:" in ln]
    return ((cause or lines or [type(e).__name__])[0])[:300]


def bank_workspaces(ctx: Ctx, bank: str | None, command: str, one: bool = False) -> list[Workspace]:
    """The workspaces a command works on: the workspace itself for a single bank; in a federation
    workspace every member bank's view (``Workspace.for_bank``), or just ``--bank``'s.

    Args:
        one: the command works on one bank at a time (it writes one file): ``--bank`` is then
            required in a federation workspace.

    Raises:
        ConfigError: ``--bank`` in a single-bank workspace, a bank that is not present, or no
            ``--bank`` where ``one`` asks for it.
    """
    from features.build import member_banks

    present = ctx.ws.banks()
    if not present:
        if bank is not None:
            raise ConfigError(f"--bank {bank}: {ctx.ws.home} is a single-bank workspace (no member bank under banks/)")
        return [ctx.ws]
    if one and bank is None:
        raise ConfigError(
            f"{ctx.ws.home} is a federation workspace (banks: {', '.join(present)}); "
            f"`nbp {command}` works on one member bank: add --bank CODE"
        )
    try:
        return [ctx.ws.for_bank(code) for code in member_banks(ctx.ws, bank, largest_first=True)]
    except NbpError as e:
        raise ConfigError(str(e)) from e


def next_bank(ws: Workspace) -> None:
    """Between member banks of one job: drop the finished bank's Feast store and return its
    freed memory, so the job's peak stays the largest bank's (decision 019)."""
    if ws.bank is not None:
        from features.store import close_store

        close_store(ws)


BANK_OPTION = click.option(
    "--bank",
    metavar="CODE",
    default=None,
    help="Member bank of a federation workspace (default: every bank, one after the other).",
)
ONE_BANK_OPTION = click.option(
    "--bank", metavar="CODE", default=None, help="Member bank of a federation workspace (required there)."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """nbp: next-best-product recommender for rural commercial banks.

    State lives under $NBP_HOME (default: the checkout).
    """
    telemetry.disable()


@main.command()
@click.option("--out", type=click.Path(file_okay=False), required=True, help="Folder to write the export to.")
@click.option("--customers", default=None, help="Number of customers, or 'full' (388,494, the reference bank).")
@click.option("--months", type=int, default=None, help="Months of history.")
@click.option("--end", default=None, help="Last simulated month, YYYY-MM.")
@click.option("--seed", type=int, default=None, help="Random seed (same seed, same export).")
@click.option(
    "--federation",
    type=int,
    metavar="K",
    default=None,
    help="Simulate K member banks of a federation into OUT/<bank_code>/, listed in OUT/federation.json.",
)
@click.option(
    "--scale",
    type=float,
    default=None,
    help="With --federation: customers per bank = its size x this (default 1; e.g. 0.02 for a quick one).",
)
@click.option(
    "--sizes",
    default=None,
    metavar="N,N,...",
    help="With --federation: each bank's customers at scale 1, comma-separated (default: log-spread 500,000 to 5,000).",
)
@common
def simulate(
    ctx: Ctx,
    out: str,
    customers: str | None,
    months: int | None,
    end: str | None,
    seed: int | None,
    federation: int | None,
    scale: float | None,
    sizes: str | None,
) -> None:
    """Write a bank export of a simulated county rural bank, plus its oracle (or, with
    --federation K, K member banks that differ in size, population, tax data and launches)."""
    from bankexport.simulate import FULL_CUSTOMERS
    from bankexport.simulate import simulate as run

    sc = ctx.cfg.simulate
    months, end, seed = months or sc.months, end or sc.end, sc.seed if seed is None else seed
    if federation is None and (scale is not None or sizes is not None):
        raise click.UsageError("--scale and --sizes need --federation K")
    if federation is not None:
        from bankexport.sim_federation import simulate_federation

        if customers is not None:
            raise click.UsageError("--customers is for one bank; give a federation --sizes and --scale")
        try:
            size_list = None if sizes is None else [int(x) for x in sizes.split(",")]
        except ValueError:
            raise click.BadParameter("integers separated by commas", param_hint="--sizes") from None
        fed = simulate_federation(
            Path(out), federation, seed, 1.0 if scale is None else scale, size_list, months, end, sc.horizon_days
        )
        click.echo(fed.describe())
        return
    if customers is None:
        n = sc.customers
    elif customers == "full":
        n = FULL_CUSTOMERS
    else:
        try:
            n = int(customers)
        except ValueError:
            raise click.BadParameter("a number or 'full'", param_hint="--customers") from None
    summary = run(Path(out), customers=n, months=months, end=end, seed=seed, horizon_days=sc.horizon_days)
    click.echo(summary.describe())


@main.command()
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.option(
    "--accept-set-aside",
    is_flag=True,
    help="Store the tables even where more rows are set aside than ingest.max_set_aside_share "
    "(default 5%); the report says so.",
)
@click.option(
    "--accept-shrink",
    is_flag=True,
    help="Store the tables even where one keeps more than ingest.max_shrink_share (default 20%) "
    "fewer rows than the previous import; the report says so.",
)
@click.option(
    "--bank",
    metavar="CODE",
    default=None,
    help="Member bank of a federation workspace (default: bank_code of manifest.json; neither: a single bank).",
)
@click.option(
    "--full",
    is_flag=True,
    help="Check every row again; by default the months of transactions and balances that open the "
    "file unchanged since the previous import keep its verdicts (the stored tables are the same).",
)
@common
def ingest(ctx: Ctx, src: str, accept_set_aside: bool, accept_shrink: bool, bank: str | None, full: bool) -> None:
    """Validate a bank export in SRC and store its typed tables in the workspace (a member
    bank's under banks/<code>/). A re-delivered export's unchanged months are not checked again."""
    from bankexport.ingest import ingest as run

    report = run(
        Path(src),
        ctx.ws,
        ctx.cfg.ingest,
        bank=bank,
        accept_set_aside=accept_set_aside,
        accept_shrink=accept_shrink,
        full=full,
    )
    click.echo(report.summary_table())


@main.group()
def quality() -> None:
    """Data quality: completeness of customer fields per ingest date, branch and manager."""


@quality.command("report")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    default=None,
    help="FILE.xlsx; the trend plot is written beside it (default: the bank's outputs/quality/).",
)
@BANK_OPTION
@common
def quality_report(ctx: Ctx, out: str | None, bank: str | None) -> None:
    """Completeness trend per field, per branch and manager, rows set aside, and each manager's
    to-complete list (客户信息待完善清单): a workbook with Chinese headers and a PNG (docs/quality.md)."""
    from training.quality_report import REPORT_XLSX, build_report, summary_line, write_report

    for ws in bank_workspaces(ctx, bank, "quality report", one=out is not None):
        report = build_report(ctx.cfg, ws)
        written = write_report(report, Path(out) if out else ws.quality_reports_dir / REPORT_XLSX)
        head = f"bank {ws.bank}: " if ws.bank else ""
        click.echo(f"{head}{summary_line(report)}")
        click.echo(f"{head}written to {written['xlsx']} and {written['trend']}")


@main.group(invoke_without_command=True)
@click.option(
    "--as-of",
    "as_of",
    multiple=True,
    type=click.DateTime(["%Y-%m-%d"]),
    help="As-of date T (repeatable); default: every month start in the data.",
)
@click.option(
    "--bank",
    metavar="CODE",
    default=None,
    help="Federation workspace: build only this member bank (default: every bank, one after the other).",
)
@click.option(
    "--full",
    is_flag=True,
    help="Rebuild every as-of date (default: only the dates that are new or whose input rows changed).",
)
@common
def features(ctx: Ctx, as_of: tuple, bank: str | None, full: bool) -> None:
    """Build the feature tables, apply the Feast repo, materialise the latest as-of (in a
    federation workspace: build each member bank's tables under banks/<code>/, bank by bank).

    Without --as-of the build is incremental: an as-of date is rebuilt only when it is new or
    rows it can see changed since the last build (content fingerprints per table and month)."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    dates = [d.date() for d in as_of]
    if bank is not None or ctx.ws.banks():
        _features_federation(ctx, dates, bank, full)
        return
    from features.store import publish
    from nbp.jobs import job

    with job(ctx.ws):
        click.echo(publish(ctx.cfg, ctx.ws, dates, full=full).describe())


def _features_federation(ctx: Ctx, dates: list, bank: str | None, full: bool = False) -> None:
    """Publish member banks' features one bank after the other (build, Feast apply, materialise,
    each into the bank's own folder), a progress line per bank."""
    from features.store import publish
    from nbp.jobs import job

    wss = bank_workspaces(ctx, bank, "features")
    with job(ctx.ws):
        for i, ws in enumerate(wss, 1):
            summary = publish(ctx.cfg, ws, dates, full=full)
            click.echo(f"bank {ws.bank} ({i}/{len(wss)}): {summary.describe()}")
            next_bank(ws)


@features.command("export")
@click.option("--as-of", "as_of", required=True, type=click.DateTime(["%Y-%m-%d"]), help="As-of date T.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Parquet file to write.")
@ONE_BANK_OPTION
@common
def features_export(ctx: Ctx, as_of: Any, out: str, bank: str | None) -> None:
    """Write the full feature table at one as-of (customer_id plus every feature)."""
    from features.store import export

    (ws,) = bank_workspaces(ctx, bank, "features export", one=True)
    click.echo(f"{export(ctx.cfg, ws, as_of.date(), Path(out)):,} customers written to {out}")


DATE = click.DateTime(["%Y-%m-%d"])


@main.command()
@click.option(
    "--cutoff",
    type=DATE,
    default=None,
    help="Use only label windows closed before this date (default: the export date).",
)
@click.option("--product", "products", multiple=True, help="Product key (repeatable; default: all).")
@BANK_OPTION
@common
def train(ctx: Ctx, cutoff: Any, products: tuple[str, ...], bank: str | None) -> None:
    """Train one calibrated model per product, register it and run the champion gate (in a
    federation workspace: for each member bank, ``nbp-<bank>-<product>``; a product with scope
    pooled is fitted once on every member bank's rows and registered and gated per bank)."""
    import pandas as pd

    from nbp.jobs import job
    from training.pipeline import check_federation
    from training.pipeline import train as run

    wss = bank_workspaces(ctx, bank, "train")
    keys = list(products) or list(ctx.cfg.products)
    check_federation(ctx.cfg, ctx.ws, keys)
    pooled = [k for k in keys if k in ctx.cfg.products and ctx.cfg.scope(k) == "pooled"]
    own = [k for k in keys if k not in pooled]
    at = pd.Timestamp(cutoff) if cutoff else None
    trained = 0
    with job(ctx.ws):
        if ctx.cfg.compute.engine == "spark" and ctx.ws.banks():  # every bank's fits in one Spark job
            from training.spark_fit import FederationJob

            fed = FederationJob(ctx.cfg, ctx.ws, [ws.bank for ws in wss], own, pooled, at).run()
            trained += sum(_echo_own(bank, own, results) for bank, results in fed.banks.items())
            trained += sum(_echo_pooled(ctx, key, results) for key, results in fed.pooled.items())
        else:
            for ws in wss if own else []:
                results = run(ctx.cfg, ws, at, own)
                next_bank(ws)
                trained += _echo_own(ws.bank, own, results)
            trained += _train_pooled(ctx, pooled, [ws.bank for ws in wss], at)
    if not trained:
        raise NbpError("no product could be trained; the reasons are above (also in MLflow and /readyz)")


def _results_table(results: list, first: str, metrics: tuple[str, ...]) -> str:
    """The terminal table of training results: ``first`` (product or bank), version, alias, window, metrics."""
    from training.evaluate import metrics_table

    return metrics_table(
        [
            {
                first: getattr(r, first),
                "version": r.version,
                "alias": r.alias or "skipped",
                "window": r.window,
                **{k: r.metrics.get(k) for k in metrics},
            }
            for r in results
        ]
    )


def _echo_own(bank: str | None, own: list[str], results: list) -> int:
    """Print one bank's results of its scope-bank products; returns the versions registered."""
    from training.pipeline import result_line

    if bank is not None:
        click.echo(f"bank {bank}: per-bank models (scope bank): {', '.join(own)}")
    click.echo(_results_table(results, "product", ("auc", "pr_auc", "lift_10", "ece", "brier")))
    for r in results:
        click.echo(result_line(r))
    return sum(r.skip is None for r in results)


def _echo_pooled(ctx: Ctx, key: str, results: list) -> int:
    """Print a pooled product's per-bank table; returns the versions registered."""
    from training.pipeline import result_line

    click.echo(f"product {key}: pooled model (scope pooled) over banks {', '.join(ctx.ws.banks())}")
    click.echo(_results_table(results, "bank", ("auc", "auc_se", "positives", "ece", "brier")))
    for r in results:
        click.echo(f"bank {r.bank}: {result_line(r)}")
    return sum(r.skip is None for r in results)


def _train_pooled(ctx: Ctx, keys: list[str], register: list[str], cutoff: Any) -> int:
    """``nbp train`` of the pooled products: one fit over every member bank, a version per bank
    of ``register``; prints each product's per-bank table. Returns the versions registered."""
    from training.pooled import train_pooled

    return sum(
        _echo_pooled(ctx, key, train_pooled(ctx.cfg, ctx.ws, key, ctx.ws.banks(), register, cutoff)) for key in keys
    )


@main.command()
@click.option("--as-of", "as_of", multiple=True, required=True, type=DATE, help="As-of date (repeatable).")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Parquet file to write.")
@click.option("--product", "products", multiple=True, help="Product key (repeatable; default: all).")
@ONE_BANK_OPTION
@common
def score(ctx: Ctx, as_of: tuple, out: str, products: tuple[str, ...], bank: str | None) -> None:
    """Score every eligible candidate with each product's champion model."""
    import pandas as pd

    from nbp.jobs import job
    from training.pipeline import score as run
    from training.pipeline import write_scores

    (ws,) = bank_workspaces(ctx, bank, "score", one=True)
    with job(ctx.ws):
        df = run(ctx.cfg, ws, [pd.Timestamp(t) for t in as_of], list(products) or None)
        path = write_scores(df, Path(out))
    click.echo(f"{len(df):,} scores ({df['product'].nunique()} products) written to {path}")


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=int, default=3000, show_default=True, help="Port to listen on.")
@common
def serve(ctx: Ctx, host: str, port: int) -> None:
    """Serve /hints, /targets and the staff page (BentoML; tokens from NBP_TOKENS or serving.tokens_file).

    A federation workspace is served whole: every member bank, each token limited to its bank.
    """
    from serving.launch import exec_server

    exec_server(ctx.cfg, ctx.ws, host, port, click.get_current_context().params.get("config_path"))


@main.command()
@click.option("--product", required=True, help="Product key.")
@click.option("--branch", default=None, help="Only this branch's customers.")
@click.option("--manager", default=None, help="Only this manager's customers.")
@click.option("--top", type=int, default=100, show_default=True, help="Treatment rows wanted.")
@click.option("--campaign", default=None, help="Campaign id (fixes the control group; default <product>-<YYYYMM>).")
@click.option(
    "--rank-by",
    type=click.Choice(["propensity", "uplift", "value"]),
    default="propensity",
    show_default=True,
    help="Rank by propensity, by uplift (the modelled effect of a contact) or by expected value.",
)
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="FILE.xlsx or FILE.csv to write.")
@ONE_BANK_OPTION
@common
def targets(
    ctx: Ctx,
    product: str,
    branch: str | None,
    manager: str | None,
    top: int,
    campaign: str | None,
    rank_by: str,
    out: str,
    bank: str | None,
) -> None:
    """Write a target list (the same list as POST /targets) for staff, from the latest batch scores.

    Every list is remembered under its campaign: the same campaign and options give the same list again.
    """
    from serving.launch import write_targets

    (ws,) = bank_workspaces(ctx, bank, "targets", one=True)
    click.echo(write_targets(ctx.cfg, ws, product, branch, manager, top, campaign, Path(out), rank_by))


@main.group()
def campaign() -> None:
    """Campaigns: every issued list is remembered per campaign; import a bank's own, list them, measure lift."""


@campaign.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@ONE_BANK_OPTION
@common
def campaign_import(ctx: Ctx, files: tuple[str, ...], bank: str | None) -> None:
    """Record a bank's own randomised campaigns from assignment files (CSV: campaign_id, product,
    list_date, customer_id, arm = treatment|control; docs/campaigns.md)."""
    import pandas as pd

    from nbp.campaigns import CampaignStore

    (ws,) = bank_workspaces(ctx, bank, "campaign import", one=True)
    if not ws.table("customers").exists():
        raise ConfigError(f"{ws.table('customers')} missing: run `nbp ingest` before importing campaigns")
    known = set(pd.read_parquet(ws.table("customers"), columns=["customer_id"])["customer_id"].astype(str))
    store = CampaignStore(ws.campaigns_dir, ws.bank or ws.recorded_bank())
    for f in files:
        done = store.import_file(Path(f), known, products=set(ctx.cfg.products))
        click.echo(f"{f}: recorded {len(done)} campaign(s): {', '.join(done)}")


@campaign.command("list")
@ONE_BANK_OPTION
@common
def campaign_list(ctx: Ctx, bank: str | None) -> None:
    """The campaigns issued or imported: id, product, lists, customers per arm."""
    from nbp.campaigns import CampaignStore

    for ws in bank_workspaces(ctx, bank, "campaign list"):
        head = f"bank {ws.bank}: " if ws.bank else ""
        records = CampaignStore(ws.campaigns_dir, ws.bank).campaigns()
        if not records:
            click.echo(f"{head}no campaign issued yet")
        for r in records:
            t = sum(x["treatment"] for x in r["lists"])
            c = sum(x["control"] for x in r["lists"])
            first = r["lists"][0]
            click.echo(
                f"{head}{r['campaign_id']}  {r['product']}  list date {first['list_date']}  "
                f"{len(r['lists'])} list(s)  treatment {t:,}  control {c:,}"
            )


@campaign.command("report")
@click.option("--campaign", "campaign_ids", multiple=True, metavar="ID", help="Only this campaign (repeatable).")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder of the workbook, JSON and plots (default: the bank's outputs/campaigns/).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON (a list, one object per campaign).")
@BANK_OPTION
@common
def campaign_report(ctx: Ctx, campaign_ids: tuple[str, ...], out: str | None, as_json: bool, bank: str | None) -> None:
    """Measured lift of each campaign against its control group, read against the latest export:
    workbook (Chinese headers), plots, JSON, and a run in MLflow (docs/campaigns.md)."""
    import json

    from training.campaign_report import build_report, log_to_mlflow, summary_line, write_report

    wss = bank_workspaces(ctx, bank, "campaign report", one=bool(campaign_ids))
    everything = []
    for ws in wss:
        head = f"bank {ws.bank}: " if ws.bank else ""
        report = build_report(ctx.cfg, ws, list(campaign_ids) or None)
        if not report.campaigns:
            click.echo(f"{head}no campaign issued or imported yet", err=as_json)
            continue
        folder = ws.campaign_reports_dir if out is None else Path(out) / (ws.bank or "")
        written = write_report(report, folder)
        run_id = log_to_mlflow(ws, report, written)
        everything += report.json()
        if not as_json:
            for c in report.campaigns:
                click.echo(head + summary_line(c.figures))
            click.echo(f"{head}written to {folder} (MLflow run {run_id})")
    if as_json:
        click.echo(json.dumps(everything, ensure_ascii=False, indent=1))


@main.group(invoke_without_command=True)
@click.option(
    "--where", default=None, help="Filter, e.g. 'tier == \"高端\" and score_consumer >= 0.2' (docs/segments.md)."
)
@click.option("--name", default=None, help="A saved segment (configs/segments/ or the bank's own; `nbp segment list`).")
@click.option("--as-of", "as_of", type=DATE, default=None, help="As-of date (default: the saved one, else the latest).")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="FILE.xlsx (default: outputs/segments/).")
@click.option(
    "--save", "save_as", default=None, metavar="NAME", help="Save the filter under NAME, pinned to its as-of."
)
@ONE_BANK_OPTION
@common
def segment(
    ctx: Ctx,
    where: str | None,
    name: str | None,
    as_of: Any,
    out: str | None,
    save_as: str | None,
    bank: str | None,
) -> None:
    """Segments (客群): the customers a filter selects at an as-of, by branch and tier, as an .xlsx."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    from serving.segments import breakdown_table, default_workbook, run_segment, write_workbook

    (ws,) = bank_workspaces(ctx, bank, "segment", one=True)
    result = run_segment(ctx.cfg, ws, where, name, as_of.date() if as_of else None, save_as)
    path = write_workbook(ctx.cfg, result, Path(out) if out else default_workbook(ws, result))
    click.echo(result.summary_line())
    if result.count:
        click.echo(breakdown_table(ctx.cfg, result).to_string(index=False, float_format=lambda x: f"{x:.1%}"))
    if save_as:
        click.echo(f"saved as segment {save_as} (as-of {result.as_of:%Y-%m-%d})")
    click.echo(f"written to {path}")


@segment.command("list")
@ONE_BANK_OPTION
@common
def segment_list(ctx: Ctx, bank: str | None) -> None:
    """The saved segments: shipped examples and the bank's own."""
    from serving.segments import saved_segments

    (ws,) = bank_workspaces(ctx, bank, "segment list", one=True)
    for s in saved_segments(ws):
        pinned = f"as-of {s.as_of:%Y-%m-%d}" if s.as_of else "latest as-of"
        who = "shipped" if s.shipped else f"saved by {s.created_by} {s.created_at}"
        click.echo(f"{s.name}  {s.zh or ''}  ({pinned}; {who})\n    {s.where}")


@segment.command("fields")
@common
def segment_fields_cmd(ctx: Ctx) -> None:
    """The fields a segment filter may name, with their values (a category's names and Chinese labels)."""
    from serving.segments import fields_frame

    for r in fields_frame(ctx.cfg).itertuples(index=False):
        values = f"  [{r.values}]" if r.values else ""
        click.echo(f"{r.name}  ({r.group}, {r.kind})  {r.zh}{values}")


@main.group()
def bench() -> None:
    """Benchmarks on public data (results: docs/benchmarks.md)."""


@bench.command("bank-marketing")
@click.option(
    "--data",
    type=click.Path(dir_okay=False),
    default=None,
    help="bank-additional CSV (';'-separated); default: ../shared/datasets/bank_marketing/"
    "bank-additional-full.csv.gz beside the checkout.",
)
@common
def bench_bank_marketing(ctx: Ctx, data: str | None) -> None:
    """Our training recipe against LightGBM defaults on UCI Bank Marketing (time-ordered and CV)."""
    from training.bank_marketing import run_benchmark

    click.echo(run_benchmark(data).table)


@main.command()
@click.option("--as-of", "as_of", required=True, type=DATE, help="Cutoff: train before it, test from it on.")
@click.option("--product", "products", multiple=True, help="Product key (repeatable; default: all).")
@click.option(
    "--oracle",
    type=click.Path(exists=True, dir_okay=False),
    default=None,
    help="Simulator oracle.parquet, for the oracle's AUC on the same rows.",
)
@click.option("--months", type=int, default=4, show_default=True, help="Monthly test as-of dates.")
@ONE_BANK_OPTION
@common
def backtest(
    ctx: Ctx, as_of: Any, products: tuple[str, ...], oracle: str | None, months: int, bank: str | None
) -> None:
    """Train with a cutoff, score later months, compare with realised uptake; write a report."""
    import pandas as pd

    from nbp.jobs import job
    from training.evaluate import metrics_table
    from training.pipeline import backtest as run

    orc = pd.read_parquet(oracle) if oracle else None
    (ws,) = bank_workspaces(ctx, bank, "backtest", one=True)
    with job(ctx.ws):
        rows, report = run(ctx.cfg, ws, pd.Timestamp(as_of), list(products) or None, orc, months)
    click.echo(metrics_table(rows))
    click.echo(f"report: {report}")


@main.command()
@click.option(
    "--search",
    is_flag=True,
    help="Cross-validate every setting again instead of reusing each champion's (training/setting_search.py).",
)
@BANK_OPTION
@common
def retrain(ctx: Ctx, search: bool, bank: str | None) -> None:
    """The monthly job: features -> train -> gate -> score -> publish scores. Safe to re-run.
    Each product's fit reuses its champion's setting (rounds chosen again) until the config changes,
    the gate fails, its scores drift or training.search_every_months have passed; --search forces
    the full search. In a federation workspace: every member bank (or --bank), largest first, each
    bank's features published and its scope-bank products trained; products with scope pooled are
    then fitted once on every member bank (always a full search); then each bank is scored
    (training.pooled.retrain_federation)."""
    from nbp.jobs import job
    from training.drift import check_guardrails
    from training.pipeline import check_federation
    from training.pipeline import retrain as run

    wss = bank_workspaces(ctx, bank, "retrain")
    check_federation(ctx.cfg, ctx.ws, list(ctx.cfg.products))
    with job(ctx.ws):
        if not ctx.ws.banks():
            click.echo(run(ctx.cfg, ctx.ws, reuse=not search))
            check_guardrails(ctx.cfg, [ctx.ws])  # exit 1 once everything is written and reported
            return
        from training.pooled import retrain_federation

        report, failed = retrain_federation(ctx.cfg, ctx.ws, [ws.bank for ws in wss], reuse=not search)
        click.echo(report)
    if failed:  # one bank's failure does not stop the others' monthly job
        raise NbpError(f"retrain failed for bank(s) {', '.join(failed)}; the reasons are above")
    check_guardrails(ctx.cfg, wss)


if __name__ == "__main__":  # pragma: no cover
    main()
