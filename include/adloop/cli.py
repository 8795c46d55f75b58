"""The `adloop` command: the parts of adloop people use outside Airflow.

    adloop demo                       generate a studio, run the nightly DAG, show the results
    adloop ui                         the Airflow UI on the same setup, with the sandbox running
    adloop hash IN.csv > OUT.csv      normalize and SHA-256 hash a customer list per Meta's rules
    adloop generate ...               write a generated business into a sandbox state file
    adloop sandbox ...                run the Stripe and Meta emulators
    adloop opt-out EMAIL...           record customers who declined tracking
    adloop webhook                    the real-time receiver: Stripe webhooks, bookings, consent, pixel.js
    adloop warehouse upgrade|current  bring the warehouse to the newest schema revision, or show its revision
    adloop warehouse revision -m MSG  write the next revision after changing a Table (developers)
"""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path


def _demo(args) -> int:
    from adloop import demo

    return demo.main(customers=args.customers, days=args.days, seed=args.seed, with_roas=not args.no_roas)


def _ui(args) -> int:
    from adloop import local

    layout = local.Layout()
    if not layout.sandbox_state.exists():
        print("No sandbox state yet: run `make demo` first, so the UI has something to show.", file=sys.stderr)
        return 2
    sandbox = local.SandboxProcess(layout.sandbox_state, stripe_port=args.stripe_port, meta_port=args.meta_port,
                                   log_path=layout.state_dir / "sandbox.log").start()
    env = local.airflow_env(layout.airflow_home, local.connections_env(layout.warehouse_url, sandbox.stripe_url,
                                                          sandbox.meta_url, app_db_url=layout.app_db_url))
    # A local, single-user UI: every visitor is an admin, so there is no password to look up.
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"
    env["AIRFLOW__API__PORT"] = str(args.port)
    # Task processes reach the API server here; Airflow's default assumes port 8080.
    env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] = f"http://127.0.0.1:{args.port}/execution/"
    print(f"Airflow UI on http://127.0.0.1:{args.port} (Ctrl-C stops it and the sandbox)")
    # A SIGTERM ends the UI like Ctrl-C does, so the sandbox and Airflow never outlive it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    airflow = subprocess.Popen([local.airflow_bin(), "standalone"], env=env)
    try:
        return airflow.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        airflow.terminate()
        try:
            airflow.wait(30)
        except subprocess.TimeoutExpired:
            airflow.kill()
        sandbox.stop()


def _hash(args) -> int:
    from adloop import identity

    src = sys.stdin if args.input == "-" else open(args.input, newline="", encoding="utf-8")
    with src:
        counts = identity.hash_csv(src, sys.stdout, default_country=args.default_country)
    print(f"hashed {counts['rows']} rows; {counts['rows_with_errors']} with values that could not be "
          "normalized (see the errors column)", file=sys.stderr)
    return 0


def _generate(args) -> int:
    from adloop.sandbox.generator import generate
    from adloop.seed import seed_business

    end = datetime.fromisoformat(args.end) if args.end else datetime.now(UTC).replace(microsecond=0)
    business = generate(seed=args.seed, customers=args.customers, days=args.days, end=end,
                        unsent_share=args.unsent_share)
    counts = seed_business(business, sandbox_state=args.state, warehouse_url=args.warehouse,
                           pixel_id=args.pixel_id, app_db=str(Path(args.state).with_name("app.db")))
    print(counts)
    return 0


def _sandbox(args) -> int:
    from adloop.sandbox.__main__ import main as sandbox_main

    forwarded = ["--state", args.state, "--stripe-port", str(args.stripe_port), "--meta-port", str(args.meta_port)]
    if args.stripe_fixture:
        forwarded += ["--stripe-fixture", args.stripe_fixture]
    return sandbox_main(forwarded) or 0


def _opt_out(args) -> int:
    from adloop import consent

    emails = list(args.emails)
    if args.file:
        with open(args.file, encoding="utf-8") as fh:
            emails += [line.strip() for line in fh if line.strip()]
    n = consent.record_opt_outs(args.warehouse, emails=emails, customer_ids=args.customer_id, source=args.source)
    print(f"recorded {n} opt-outs (hashed)")
    return 0


def _webhook(args) -> int:
    from adloop.webhook import WebhookSettings, serve

    serve(WebhookSettings.from_env(), host=args.host, port=args.port)
    return 0


def _warehouse_upgrade(args) -> int:
    from adloop.warehouse import connect, migrations

    engine = connect(args.url)
    try:
        done = migrations.upgrade(engine)
    except migrations.MigrationError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(f"{engine.url}: {done}")
    return 0


def _warehouse_current(args) -> int:
    from adloop.warehouse import connect, migrations

    engine = connect(args.url)
    with engine.connect() as conn:
        found = migrations.current_revision(conn)
    newest = migrations.head()
    if found == newest:
        print(f"{engine.url}: revision {found}, the newest")
    elif found is None:
        print(f"{engine.url}: no revision (no {migrations.VERSION_TABLE} table, or an empty one); "
              "`adloop warehouse upgrade` builds or stamps it")
    else:
        print(f"{engine.url}: revision {found}, the newest is {newest}; `adloop warehouse upgrade` upgrades it")
    return 0


def _warehouse_revision(args) -> int:
    from adloop.warehouse import migrations

    path = migrations.revision(args.message, scratch_url=args.scratch_url)
    if path is None:
        print("The Tables match the revisions: there is no revision to write.")
        return 0
    print(f"wrote {path}\nRead it (renames, data moves and partial-index conditions are yours to write), "
          "then commit it with the Table change.")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from adloop import local

    parser = argparse.ArgumentParser(prog="adloop", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="run the nightly reconciliation on a generated studio")
    p.add_argument("--customers", type=int, default=400)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-roas", action="store_true", help="run only the reconciliation, not insights and ROAS")
    p.set_defaults(func=_demo)

    p = sub.add_parser("ui", help="the Airflow UI on the demo's setup")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--stripe-port", type=int, default=12111)
    p.add_argument("--meta-port", type=int, default=12112)
    p.set_defaults(func=_ui)

    p = sub.add_parser("hash", help="normalize and hash a CSV of customers per Meta's rules")
    p.add_argument("input", help="CSV with any of: email, phone, first_name, last_name, city, state, zip, "
                                 "country, date_of_birth, external_id ('-' for stdin)")
    p.add_argument("--default-country", default="CA",
                   help="ISO country for phones written without a country code (default CA)")
    p.set_defaults(func=_hash)

    layout = local.Layout()
    p = sub.add_parser("generate", help="write a generated business into sandbox state and the warehouse")
    p.add_argument("--customers", type=int, default=400)
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--unsent-share", type=float, default=1 / 3)
    p.add_argument("--end", help="ISO time the business's history ends (default: now)")
    p.add_argument("--state", default=str(layout.sandbox_state))
    p.add_argument("--warehouse", default=layout.warehouse_url)
    p.add_argument("--pixel-id", default=local.SANDBOX_PIXEL_ID)
    p.set_defaults(func=_generate)

    p = sub.add_parser("sandbox", help="serve the Stripe and Meta emulators")
    p.add_argument("--state", default=str(layout.sandbox_state))
    p.add_argument("--stripe-port", type=int, default=12111)
    p.add_argument("--meta-port", type=int, default=12112)
    p.add_argument("--stripe-fixture", help="JSON or JSON Lines file of Stripe API objects to load first")
    p.set_defaults(func=_sandbox)

    p = sub.add_parser("opt-out", help="record customers who declined tracking (stored hashed)")
    p.add_argument("emails", nargs="*")
    p.add_argument("--file", help="a file with one email per line")
    p.add_argument("--customer-id", action="append", default=[], help="a Stripe customer id (repeatable)")
    p.add_argument("--source", default="manual")
    p.add_argument("--warehouse", default=layout.warehouse_url)
    p.set_defaults(func=_opt_out)

    p = sub.add_parser("webhook", help="serve the real-time receiver (settings from ADLOOP_* variables)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8090)
    p.set_defaults(func=_webhook)

    p = sub.add_parser("warehouse", help="the warehouse's schema revisions (Alembic migrations)")
    warehouse = p.add_subparsers(dest="warehouse_command", required=True)
    url_help = "SQLAlchemy URL of the warehouse (default: ADLOOP_WAREHOUSE_URL, else the local SQLite file)"
    p = warehouse.add_parser("upgrade", help="bring the warehouse to the newest revision (what every task does first)")
    p.add_argument("--url", default=layout.warehouse_url, help=url_help)
    p.set_defaults(func=_warehouse_upgrade)
    p = warehouse.add_parser("current", help="show the warehouse's revision and the newest one")
    p.add_argument("--url", default=layout.warehouse_url, help=url_help)
    p.set_defaults(func=_warehouse_current)
    p = warehouse.add_parser("revision", help="write the next revision from how the Tables differ from the revisions")
    p.add_argument("-m", "--message", required=True, help="what changed, e.g. \"backfill_plan keeps the attempt\"")
    p.add_argument("--scratch-url", help="an empty database to run the revisions on (default: a temporary SQLite "
                                         "file); changes to it are rolled back")
    p.set_defaults(func=_warehouse_revision)
    return parser


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
