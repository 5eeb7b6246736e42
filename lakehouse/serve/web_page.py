"""The web dashboard's page (Streamlit), over ``web_tables`` (delta-rs, no JVM).

Silver's figures as the Silver tables hold them (latest, under how old they are by Silver's status file,
or as of an earlier run picked in the sidebar): net revenue beside gross sales, refunds and cancellations,
the return rate by country, segment and product, the corrections waiting for their sale (orphans) and the
events Silver refused; the stream's health from its metrics table, the quarantine and the latest sales.
Every section says what is missing or unreadable, by path, instead of failing; details go to
<data_dir>/logs/dashboard.log.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import streamlit as st

from lakehouse.platform.cli import LOG_FORMAT, RedactSecrets
from lakehouse.platform.config import Config, ConfigError, Duration, load_config
from lakehouse.platform.paths import Paths
from lakehouse.serve import web_tables as wt
from lakehouse.serve.headline import Headline
from lakehouse.serve.numbers import duration, euros, rate, share
from lakehouse.serve.safe_text import for_web
from lakehouse.silver.freshness import SilverFreshness, read_freshness
from lakehouse.silver.tables import TIERS

log = logging.getLogger(__name__)
_log_handler: logging.Handler | None = None

LIVE = "live"


def no_data_message(paths: Paths) -> str:
    return (f"No sales yet: there are no Silver tables under {paths.silver_dir}. Start the pipeline with "
            "`make demo` (or run producer_ventes.py, spark_streaming_delta.py and streaming_silver.py); "
            "this page fills itself as Silver runs.")


@st.cache_resource
def settings() -> tuple[Config | None, str | None]:
    """The configuration, read once per server (config.ini < environment; streamlit_dashboard.py turns
    its flags into environment variables), and the page's log file. (None, message) on a bad setting."""
    try:
        cfg = load_config(None)
    except ConfigError as e:
        return None, str(e)
    log_to(Paths.from_config(cfg).logs_dir / "dashboard.log", cfg.monitoring.log_level)
    return cfg, None


def log_to(path: Path, level: str) -> None:
    """The package's log lines go to ``path`` (one file handler: a new configuration replaces it)."""
    global _log_handler
    path.parent.mkdir(parents=True, exist_ok=True)
    package = logging.getLogger("lakehouse")
    if _log_handler is not None:
        package.removeHandler(_log_handler)
        _log_handler.close()
    _log_handler = logging.FileHandler(path, encoding="utf-8")
    _log_handler.setFormatter(logging.Formatter(LOG_FORMAT))
    _log_handler.addFilter(RedactSecrets())
    package.addHandler(_log_handler)
    package.setLevel(getattr(logging, level))


def section(title: str, paths: Paths, show: Callable[[], None]) -> None:
    """A titled part of the page; a missing or unreadable table is named, any other failure is one line
    on the page and its traceback in the log."""
    st.subheader(title)
    try:
        show()
    except wt.TableMissing as e:
        st.info(f"Not available yet — {e}")
    except wt.TableProblem as e:
        st.error(str(e))
    except Exception as e:  # the page must go on showing the other sections
        log.exception("Section %r failed", title)
        st.error(f"This part could not be shown ({type(e).__name__}: {str(e)[:200]}); details in "
                 f"{paths.logs_dir / 'dashboard.log'}")


def _count(n: int | None) -> str:
    return "—" if n is None else f"{n:,}"


def _utc(moment: datetime | None) -> str:
    return "—" if moment is None else f"{moment.astimezone(timezone.utc):%Y-%m-%d %H:%M:%S} UTC"


def pick_run(paths: Paths) -> wt.SilverRun | None:
    """The sidebar's time-travel picker: the live tables or one of the newest Silver runs."""
    st.sidebar.header("Time travel")
    try:
        runs = wt.silver_runs(paths)
    except wt.TableProblem:
        runs = []
    by_batch = {r.batch_id: r for r in runs}

    def label(choice: str | int) -> str:
        if isinstance(choice, str):  # LIVE
            return "latest (refreshes by itself)"
        return f"run {choice} · {_utc(by_batch[choice].committed)}"

    options: list[str | int] = [LIVE, *by_batch]
    choice = st.sidebar.selectbox("Silver as of", options, key="silver_run", format_func=label)
    st.sidebar.caption(f"{len(runs)} Silver run(s) to go back to (the newest {wt.RUNS_LISTED} at most; VACUUM "
                       "removes the files of versions older than [analytics] vacuum_retention).")
    return None if isinstance(choice, str) else by_batch[choice]  # a str: LIVE


def show_freshness(freshness: SilverFreshness, now: datetime) -> None:
    """How old the live Silver is (newest sale counted, last batch committed): a caption while it runs, an
    error when it has stopped (its figures are then not current), a note when it never said."""
    line = replace(freshness, error=None).summary(now)
    if freshness.state == "stopped":
        st.error(line)
    elif not freshness.current:
        st.info(line)
    else:
        st.caption(line)
    if freshness.current and freshness.error:
        # The job's message may quote the data: plain text, never Markdown.
        st.warning("Silver's last batch failed; the job's message:")
        st.text(for_web(freshness.error))


def show_headline(silver: wt.Silver, figures: Headline, run: wt.SilverRun | None,
                  orphan_timeout: Duration) -> None:
    which = "latest run" if run is None else f"run {run.batch_id}"
    st.caption(f"Silver, {which}, written {_utc(silver.committed)} · table versions "
               + ", ".join(f"{t} {v}" for t, v in silver.versions.items()))
    cols = st.columns([2, 4, 2, 3, 3])  # room for a revenue in the billions
    cols[0].metric("Sales", f"{figures.sales:,}")
    # "Revenue", as the terminal dashboard and the report say it (scripts read the label): it is net.
    cols[1].metric("Revenue", euros(figures.revenue), help="Net: gross sales less refunds and cancellations")
    cols[2].metric("Clients", f"{figures.clients:,}")
    cols[3].metric("Loyal clients", f"{figures.loyal:,} ({share(figures.loyal, figures.clients)})")
    cols[4].metric("Average basket", euros(figures.average_basket), help="Net revenue per sale not cancelled")
    cols = st.columns([4, 4, 4, 2, 2, 2])
    cols[0].metric("Gross sales", euros(figures.gross))
    cols[1].metric("Refunds", euros(figures.refunds))
    cols[2].metric("Cancelled", euros(figures.cancelled))
    cols[3].metric("Returns", f"{figures.returns:,}")
    cols[4].metric("Cancellations", f"{figures.cancellations:,}")
    cols[5].metric("Return rate", rate(figures.return_rate), help="Units returned per unit sold")
    cols = st.columns(len(TIERS) + 3)
    for col, tier in zip(cols, TIERS):
        n = figures.tiers[tier]
        col.metric(f"{tier} clients", f"{n:,} ({share(n, figures.clients)})")
    cols[-3].metric("Corrections waiting", f"{figures.waiting:,}", help="Returns and cancellations whose sale "
                    "Silver has not seen yet")
    cols[-2].metric("Orphans", f"{figures.orphans:,}", help=f"Corrections waiting for longer than {orphan_timeout} "
                    "([analytics] orphan_timeout)")
    cols[-1].metric("Rejected events", f"{figures.rejected:,}", help="Corrections and sales Silver refused")


def bar_chart(rows: list[dict], x: str, y: str, height: int) -> None:
    """Streamlit's bar chart, or nothing when there is nothing to draw (it refuses an empty list)."""
    if rows:
        st.bar_chart(rows, x=x, y=y, sort=False, height=height)


def _corrected(row: dict) -> dict:
    """A table of totals' returns and cancellations, as the page's columns show them."""
    return {"Refunds": euros(row["remboursements"]), "Return rate": rate(row["taux_retour"]),
            "Cancelled": euros(row["montant_annule"]), "Gross": euros(row["chiffre_affaires_brut"]),
            "Returns": row["nb_retours"], "Cancellations": row["nb_annulations"]}


def show_breakdowns(silver: wt.Silver, figures: Headline) -> None:
    left, right = st.columns(2)
    with left:
        st.markdown("**Net revenue by country**")
        pays = wt.ordered(silver.pays, [("chiffre_affaires", "descending"), ("pays", "ascending")])
        bar_chart([{"country": p["pays"], "net revenue (€)": float(p["chiffre_affaires"])} for p in pays],
                  "country", "net revenue (€)", 260)
        st.dataframe([{"Country": p["pays"], "Sales": p["nb_ventes"], "Net revenue": euros(p["chiffre_affaires"]),
                       "Share": share(p["chiffre_affaires"], figures.revenue), **_corrected(p),
                       "Clients": p["nb_clients"]} for p in pays], hide_index=True)
    with right:
        st.markdown("**Net revenue by segment**")
        segments = wt.ordered(silver.segments, [("segment", "ascending")])
        bar_chart([{"segment": s["segment"], "net revenue (€)": float(s["chiffre_affaires"])} for s in segments],
                  "segment", "net revenue (€)", 260)
        st.dataframe([{"Segment": s["segment"], "Sales": s["nb_ventes"], "Net revenue": euros(s["chiffre_affaires"]),
                       "Share": share(s["chiffre_affaires"], figures.revenue), **_corrected(s),
                       "Clients": s["nb_clients"], "Countries": s["nb_pays"]} for s in segments], hide_index=True)
    st.markdown("**Net revenue by day** (refunds and cancellations count on the day they were made)")
    days = wt.ordered(silver.ventes_jour, [("jour", "ascending")])
    bar_chart([{"day": str(d["jour"]), "net revenue (€)": float(d["chiffre_affaires"])} for d in days],
              "day", "net revenue (€)", 220)
    st.markdown(f"**Products by net revenue** (the first {wt.TOP_PRODUCTS})")
    products = wt.top_products(silver)
    # Two products may share a name: each bar says its id too.
    bar_chart([{"product": f"{p['produit_nom'] or '—'} · {p['produit_id']}",
                "return rate (%)": 100 * (p["taux_retour"] or 0.0)} for p in products],
              "product", "return rate (%)", 220)
    st.dataframe([{"Product": p["produit_nom"], "Id": p["produit_id"], "Category": p["categorie"],
                   "Sales": p["nb_ventes"], "Units sold": p["quantite_vendue"],
                   "Units returned": p["quantite_retournee"], "Net revenue": euros(p["chiffre_affaires"]),
                   **_corrected(p)} for p in products], hide_index=True)
    st.markdown(f"**Top {wt.TOP_CLIENTS} clients by net revenue**")
    st.dataframe([{"#": i, "Client": c["client_nom"], "Id": c["client_id"], "Country": c["pays"],
                   "Segment": c["segment"], "Purchases": c["nb_achats"], "Net revenue": euros(c["total_depense"]),
                   "Refunds": euros(c["total_rembourse"]), "Returns": c["nb_retours"],
                   "Cancellations": c["nb_annulations"], "Tier": c["segment_depense"],
                   "Loyal": "yes" if c["est_client_fidele"] else "no"}
                  for i, c in enumerate(wt.top_clients(silver), 1)], hide_index=True)


def _event(row: dict) -> dict:
    """A correction (or refused event) as the page's columns show it: its text already through ``shown``."""
    return {"Type": row["type_evenement"], "Correction": row["retour_id"], "Sale": row["vente_id"],
            "Client": row["client_id"], "Quantity": row["quantite"], "Amount": euros(row["montant"]),
            "Motif": row["motif"]}


def show_corrections(silver: wt.Silver, figures: Headline, now: datetime, orphan_timeout: Duration) -> None:
    """The corrections waiting for their sale for longer than the orphan timeout, and the events Silver
    refused: per reason, and the newest."""
    st.caption(f"{figures.waiting:,} correction(s) waiting for their sale; {figures.orphans:,} of them for longer "
               f"than {orphan_timeout} ([analytics] orphan_timeout): orphans, shown here (they keep waiting: "
               "Silver applies one when its sale arrives).")
    orphans = wt.orphans(silver, now, orphan_timeout.seconds)
    if orphans:
        st.dataframe([{"Received": _utc(o["recu_le"]), "Waiting for": duration(o["attente_s"]), **_event(o)}
                      for o in orphans], hide_index=True)
    if not silver.rejected:
        st.caption("No event refused by Silver.")
        return
    st.caption(f"{silver.rejected:,} event(s) refused by Silver (a return of more than remains, a correction "
               f"after a cancellation or naming another client, a re-used id); the newest {wt.LATEST_REJECTIONS}:")
    left, right = st.columns([1, 3])
    left.dataframe([{"Why refused": r["raison"], "Events": r["events"]} for r in wt.rejections_by_reason(silver)],
                   hide_index=True)
    right.dataframe([{"Received": _utc(r["recu_le"]), "Why": r["raison"], **_event(r)}
                     for r in wt.latest_rejections(silver)], hide_index=True)


def show_stream(paths: Paths) -> None:
    health = wt.stream_health(paths, datetime.now(timezone.utc))
    cols = st.columns(6)
    cols[0].metric("Events/s in (last minute)", "—" if health.events_per_s is None else f"{health.events_per_s:,.1f}")
    cols[1].metric("Last batch latency", "—" if health.last_latency_ms is None
                   else f"{health.last_latency_ms / 1000:.2f} s")
    cols[2].metric("Kafka lag", "—" if health.kafka_lag is None else f"{health.kafka_lag:,}")
    cols[3].metric("Rows in Bronze", _count(health.bronze_rows))
    cols[4].metric("Quarantined", _count(health.quarantined))
    cols[5].metric("Duplicates", _count(health.duplicates))
    if health.series:
        st.caption(f"Last batch committed {_utc(health.last_batch_at)}; per minute over the last "
                   f"{int(wt.SERIES_WINDOW.total_seconds() // 60)} minutes:")
        left, right = st.columns(2)
        minutes = [f"{s['minute']:%H:%M}" for s in health.series]  # UTC, as every time on the page
        left.line_chart([{"minute (UTC)": m, "events": s["events"]} for m, s in zip(minutes, health.series)],
                        x="minute (UTC)", y="events", height=200)
        right.line_chart([{"minute (UTC)": m, "latency p50 (ms)": s["latency_p50_ms"]}
                          for m, s in zip(minutes, health.series)], x="minute (UTC)", y="latency p50 (ms)", height=200)
    else:
        st.caption(f"No batch committed in the last {int(wt.SERIES_WINDOW.total_seconds() // 60)} minutes "
                   f"(last one: {_utc(health.last_batch_at)}).")


def show_quarantine(paths: Paths) -> None:
    try:
        by_reason = wt.quarantine_by_reason(paths)
    except wt.TableMissing:
        by_reason = []  # the stream creates the table with its first quarantined record
    if not by_reason:
        st.caption("Nothing quarantined.")
        return
    left, right = st.columns([1, 3])
    left.dataframe([{"Reason": r["reason"], "Records": r["records"]} for r in by_reason], hide_index=True)
    right.dataframe([{"Received": _utc(r["ingestion_ts"]), "Reason": r["reason"], "All reasons": r["reasons"],
                      "Value (hex)": r["raw_value"], "Partition": r["kafka_partition"], "Offset": r["kafka_offset"]}
                     for r in wt.quarantine_samples(paths)], hide_index=True)


def show_latest_sales(paths: Paths) -> None:
    st.dataframe([{"Received": _utc(s["ingestion_ts"]), "Sale time": _utc(s["event_ts"]), "Sale": s["vente_id"],
                   "Client": s["client_nom"], "Country": s["pays"], "Segment": s["segment"],
                   "Product": s["produit_nom"], "Quantity": s["quantite"], "Amount": euros(s["montant"])}
                  for s in wt.latest_sales(paths)], hide_index=True)


def body(paths: Paths, run: wt.SilverRun | None, orphan_timeout: Duration) -> None:
    try:
        has_data = paths.silver_dir.exists() or paths.bronze_metrics.exists()
        has_silver = (paths.silver("clients") / "_delta_log").is_dir()
    except OSError as e:  # the lake on object storage that does not answer, or refuses the key
        log.warning("Cannot reach the lake at %s", paths.lake_dir, exc_info=True)
        st.error(f"The lake at {paths.lake_dir} cannot be read ({wt.first_line(e)}); "
                 f"details in {paths.logs_dir / 'dashboard.log'}")
        return
    if not has_data:
        st.info(no_data_message(paths))
        return
    silver: list[tuple[wt.Silver, Headline]] = []  # read once for the Silver sections
    # Orphans as of now, or as of the run shown.
    now = datetime.now(timezone.utc) if run is None else run.committed

    def headline() -> None:
        if run is None:  # the latest tables; an earlier run says when it was written, and nothing more
            # Read before the tables: they are then at least as recent as the line says.
            show_freshness(read_freshness(paths.silver_status, now), now)
        tables = wt.read_silver(paths, run)
        silver.append((tables, wt.headline(tables, now, orphan_timeout.seconds)))
        show_headline(*silver[0], run, orphan_timeout)

    if has_silver:
        section("Sales (Silver)", paths, headline)
    else:
        st.info(no_data_message(paths))
    section("Stream health (Bronze)", paths, lambda: show_stream(paths))
    if silver:
        section("Net revenue, refunds and returns by country, segment, day and product · top clients", paths,
                lambda: show_breakdowns(*silver[0]))
        section("Orphan corrections and events Silver refused", paths,
                lambda: show_corrections(*silver[0], now, orphan_timeout))
    section("Quarantine", paths, lambda: show_quarantine(paths))
    section(f"Latest {wt.LATEST_SALES} sales received", paths, lambda: show_latest_sales(paths))


def page() -> None:
    st.set_page_config(page_title="Sales lakehouse", layout="wide")
    cfg, problem = settings()
    st.title("Sales lakehouse")
    if cfg is None:
        st.error(f"Configuration error: {problem}")
        st.stop()
    paths = Paths.from_config(cfg)
    run = pick_run(paths)
    refresh = cfg.monitoring.dashboard_refresh.seconds
    st.caption(f"Data: {paths.delta_dir} · " + (f"refreshes every {refresh:g} s" if run is None
                                                 else "pinned to an earlier Silver run (no refresh)"))
    # Only the page's body reruns on the timer; the picker keeps its choice.
    st.fragment(run_every=refresh if run is None else None)(body)(paths, run, cfg.analytics.orphan_timeout)

