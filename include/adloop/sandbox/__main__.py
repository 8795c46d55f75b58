"""``python -m adloop.sandbox``: serve the Stripe and Meta emulators until interrupted."""

from __future__ import annotations

import argparse
import logging

from adloop.sandbox.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m adloop.sandbox",
        description="Serve local emulators of the Stripe API and the Meta Graph API over one SQLite state file.",
    )
    parser.add_argument("--state", required=True, help="SQLite state file (created if missing)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--stripe-port", type=int, default=12111, help="Stripe emulator port (0: any free)")
    parser.add_argument("--meta-port", type=int, default=12112, help="Meta emulator port (0: any free)")
    parser.add_argument(
        "--stripe-fixture",
        action="append",
        default=[],
        metavar="FILE",
        help="Stripe objects to load before serving: a JSON list, a list envelope or JSON Lines (repeatable)",
    )
    parser.add_argument(
        "--ready-file",
        metavar="FILE",
        help='write {"stripe_url", "meta_url", "pid", "state"} here once listening; removed on exit',
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)

    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    serve(
        args.state,
        args.stripe_port,
        args.meta_port,
        host=args.host,
        stripe_fixtures=args.stripe_fixture,
        ready_file=args.ready_file,
    )


if __name__ == "__main__":
    main()
