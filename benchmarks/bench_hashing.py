"""How fast adloop normalizes and hashes customer lists, against two yardsticks.

    .venv/bin/python benchmarks/bench_hashing.py --rows 1000000

Generates N contacts of an Edmonton business (deterministic seed: accented and apostrophed
names, local phone numbers in the shapes people type, postal codes, "Alberta"/"AB", "Canada")
and times, in one run, over the keys em, ph, fn, ln, zp, ct, st and country:

(a) adloop: `identity.hash_frame`, normalization and hashing together;
(b) the facebook-business SDK: `Normalize.normalize_field(key, value)` per value, which also
    hashes (on a sample when --sdk-rows is smaller than --rows; its rate is per row, so it
    scales linearly);
(c) the physical limit: a bare `hashlib.sha256(b).hexdigest()` loop over the bytes adloop
    normalized, every value of every row, with no normalization at all.

adloop can beat (c): it hashes each distinct city, name, state, postal code and country once
(a million rows share a few thousand), and uses CPython's built-in SHA-256, which is faster
than OpenSSL's for short inputs. Each of (a), (b) and (c) runs --repeat times, interleaved,
and the fastest run counts.

It prints rows/s for each, the two ratios, and a JSON line for BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "include"))

from adloop import identity  # noqa: E402

KEYS = ("em", "ph", "fn", "ln", "zp", "ct", "st", "country")
COLUMNS = {
    "em": "email",
    "ph": "phone",
    "fn": "first_name",
    "ln": "last_name",
    "zp": "zip",
    "ct": "city",
    "st": "state",
    "country": "country",
}

FIRST_NAMES = [
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Amélie",
    "Zoë",
    "Hélène",
    "Chloé",
    "François",
    "José",
    "Mary-Kate",
    "Jean-Luc",
    "Aarav",
    "Priya",
    "Wei",
    "Mei",
    "Fatima",
    "Omar",
    "Siobhán",
    "Björn",
    "Ethan",
    "Ava",
    "Lucas",
    "Sophia",
    "Mateo",
    "Isabella",
    "Aiden",
    "Mia",
    "Élodie",
    "Renée",
    "Thérèse",
    "Noël",
    "Ana María",
    "D'Arcy",
    "Jo",
    "Kateřina",
    "Søren",
    "Maël",
    "Inés",
    "Dũng",
]
LAST_NAMES = [
    "Smith",
    "Brown",
    "Tremblay",
    "Martin",
    "Roy",
    "Wilson",
    "MacDonald",
    "Gagnon",
    "Johnson",
    "O'Brien",
    "O'Connor",
    "Smith-Jones",
    "Lévesque",
    "Côté",
    "Bélanger",
    "Nguyen",
    "Singh",
    "Patel",
    "Li",
    "Wang",
    "Chen",
    "Kim",
    "Müller",
    "García",
    "St. Pierre",
    "Van der Berg",
    "Da Silva",
    "Fitzgerald",
    "Ó Súilleabháin",
    "Łukasik",
    "Dvořák",
    "Æbelø",
    "McLean",
    "Leblanc",
    "Cardinal",
    "Ahenakew",
    "Bear",
    "Desjarlais",
    "Okafor",
    "Haddad",
]
DOMAINS = ["gmail.com", "hotmail.com", "yahoo.ca", "shaw.ca", "telus.net", "outlook.com", "icloud.com"]
CITIES = [
    "Edmonton",
    "St. Albert",
    "Sherwood Park",
    "Spruce Grove",
    "Leduc",
    "Fort Saskatchewan",
    "EDMONTON",
    "edmonton ",
    "Beaumont",
    "Stony Plain",
]
STATES = ["AB", "Alberta", "ab", "AB", "Alta"]
COUNTRIES = ["Canada", "CA", "ca", "Canada"]
FSAS = ["T5A", "T5J", "T5K", "T6E", "T6G", "T6W", "T6X", "T8N", "T8A", "T7X", "T4X"]
AREA_CODES = ["780", "587", "825"]


def make_contacts(rows: int, seed: int = 20260401) -> pd.DataFrame:
    """N realistic contacts, the same every run for a given seed."""
    rng = np.random.default_rng(seed)

    first = np.array(FIRST_NAMES, dtype=object)[rng.integers(len(FIRST_NAMES), size=rows)]
    last = np.array(LAST_NAMES, dtype=object)[rng.integers(len(LAST_NAMES), size=rows)]
    domain = np.array(DOMAINS, dtype=object)[rng.integers(len(DOMAINS), size=rows)]
    numbers = rng.integers(1_000, 10_000_000, size=rows)
    # Mostly clean, some typed in capitals with stray spaces, and 1 in 250 missing its "@".
    emails = [
        f"{f.split()[0]}.{ln.replace(' ', '')}{n % 100_000}@{d}"
        if n % 7
        else f" {f[0]}{ln.replace(' ', '')}{n}{'' if n % 250 else '.'}{'@' if n % 250 else ''}{d.upper()} "
        for f, ln, n, d in zip(first, last, numbers, domain, strict=True)
    ]

    area = np.array(AREA_CODES, dtype=object)[rng.integers(len(AREA_CODES), size=rows)]
    exchange = rng.integers(200, 1000, size=rows)
    line = rng.integers(0, 10_000, size=rows)
    shape = rng.integers(0, 5, size=rows)
    templates = (
        "{a}-{e}-{l:04d}",
        "({a}) {e} {l:04d}",
        "+1 {a} {e} {l:04d}",
        "{a}{e}{l:04d}",
        "1-{a}-{e}-{l:04d}",
    )
    phones = [
        templates[s].format(a=a, e=e, l=ln) for s, a, e, ln in zip(shape, area, exchange, line, strict=True)
    ]
    # 1 in 250 is a number someone typed without its area code.
    for row in range(0, rows, 250):
        phones[row] = f"{exchange[row]}-{line[row]:04d}"

    letters = np.array(list("ABCEGHJKLMNPRSTVWXYZ"), dtype=object)
    fsa = np.array(FSAS, dtype=object)[rng.integers(len(FSAS), size=rows)]
    ldu_digit_1 = rng.integers(0, 10, size=rows)
    ldu_letter = letters[rng.integers(len(letters), size=rows)]
    ldu_digit_2 = rng.integers(0, 10, size=rows)
    zips = [f"{f} {a}{b}{c}" for f, a, b, c in zip(fsa, ldu_digit_1, ldu_letter, ldu_digit_2, strict=True)]

    def pick(choices: list[str]) -> np.ndarray:
        return np.array(choices, dtype=object)[rng.integers(len(choices), size=rows)]

    return pd.DataFrame(
        {
            "email": pd.array(emails, dtype="str"),
            "phone": pd.array(phones, dtype="str"),
            "first_name": pd.array(first, dtype="str"),
            "last_name": pd.array(last, dtype="str"),
            "zip": pd.array(zips, dtype="str"),
            "city": pd.array(pick(CITIES), dtype="str"),
            "state": pd.array(pick(STATES), dtype="str"),
            "country": pd.array(pick(COUNTRIES), dtype="str"),
        }
    )


def time_adloop(contacts: pd.DataFrame) -> tuple[float, pd.DataFrame]:
    started = time.perf_counter()
    hashed = identity.hash_frame(contacts, default_country="CA")
    return time.perf_counter() - started, hashed


def time_sdk(contacts: pd.DataFrame) -> tuple[float, int]:
    """The SDK's per-value normalizer+hash; values it rejects are counted, not hashed."""
    from facebook_business.adobjects.serverside.normalize import Normalize

    normalize_field = Normalize.normalize_field
    columns = [(key, contacts[COLUMNS[key]].tolist()) for key in KEYS]
    rejected = 0
    started = time.perf_counter()
    for key, values in columns:
        for value in values:
            try:
                normalize_field(key, value)
            except (TypeError, ValueError):
                rejected += 1
    return time.perf_counter() - started, rejected


def normalized_payload(contacts: pd.DataFrame) -> list[bytes]:
    """The bytes adloop hashes for these contacts, for the bare hashlib loop."""
    payload: list[bytes] = []
    for key in KEYS:
        normalized, _ = identity.normalize(key, contacts[COLUMNS[key]], default_country="CA")
        payload.extend(value.encode() for value in normalized.dropna())
    return payload


def time_hashlib(payload: list[bytes]) -> float:
    """Bare hashlib over bytes that are already normalized: the cost of hashing alone."""
    sha256 = hashlib.sha256
    started = time.perf_counter()
    [sha256(value).hexdigest() for value in payload]
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="contacts to hash (default 1,000,000)")
    parser.add_argument(
        "--sdk-rows",
        type=int,
        default=200_000,
        help="contacts for the SDK run, scaled to --rows (default 200,000)",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs of each, interleaved; the fastest counts (default 3)"
    )
    parser.add_argument("--seed", type=int, default=20260401)
    args = parser.parse_args()

    print(f"generating {args.rows:,} contacts (seed {args.seed}) ...", flush=True)
    contacts = make_contacts(args.rows, args.seed)
    sdk_rows = min(args.sdk_rows, args.rows)
    sdk_contacts = contacts.head(sdk_rows)
    payload = normalized_payload(contacts)

    # Interleaved, so a busy moment on the machine slows one run of each, not all of one kind.
    adloop_seconds = sdk_seconds = hashlib_seconds = float("inf")
    for run in range(args.repeat):
        seconds, hashed = time_adloop(contacts)
        adloop_seconds = min(adloop_seconds, seconds)
        seconds, sdk_rejected = time_sdk(sdk_contacts)
        sdk_seconds = min(sdk_seconds, seconds)
        hashlib_seconds = min(hashlib_seconds, time_hashlib(payload))
        print(f"run {run + 1}/{args.repeat} done", flush=True)

    values_hashed = int(hashed[list(KEYS)].notna().sum().sum())
    rows_with_errors = int((hashed["errors"] != "").sum())
    adloop_rate = args.rows / adloop_seconds
    sdk_rate = sdk_rows / sdk_seconds
    hashlib_rate = args.rows / hashlib_seconds
    hashlib_values = len(payload)

    sampled = "" if sdk_rows == args.rows else f" (measured on {sdk_rows:,} rows, rate per row)"
    print(f"keys: {', '.join(KEYS)}")
    print(
        f"(a) adloop hash_frame     {adloop_rate:>12,.0f} rows/s  {adloop_seconds:7.2f} s for {args.rows:,} rows, "
        f"{values_hashed:,} values hashed, {rows_with_errors:,} rows with errors"
    )
    print(
        f"(b) SDK normalize_field   {sdk_rate:>12,.0f} rows/s  {sdk_seconds:7.2f} s for {sdk_rows:,} rows{sampled}, "
        f"{sdk_rejected:,} values rejected"
    )
    print(
        f"(c) bare hashlib loop     {hashlib_rate:>12,.0f} rows/s  {hashlib_seconds:7.2f} s for {hashlib_values:,} "
        "pre-normalized values"
    )
    print(f"adloop / SDK:             {adloop_rate / sdk_rate:6.2f}x  (target >= 5)")
    print(f"adloop / bare hashlib:    {adloop_rate / hashlib_rate:6.2f}   (target >= 0.5)")
    print(
        json.dumps(
            {
                "benchmark": "bench_hashing",
                "rows": args.rows,
                "keys": list(KEYS),
                "adloop_rows_per_s": round(adloop_rate),
                "sdk_rows_per_s": round(sdk_rate),
                "sdk_sample_rows": sdk_rows,
                "repeat": args.repeat,
                "values_hashed": values_hashed,
                "hashlib_rows_per_s": round(hashlib_rate),
                "adloop_vs_sdk": round(adloop_rate / sdk_rate, 2),
                "adloop_vs_hashlib": round(adloop_rate / hashlib_rate, 2),
                "normalization_version": identity.NORMALIZATION_VERSION,
                "python": platform.python_version(),
                "pandas": pd.__version__,
                "machine": platform.machine(),
            }
        )
    )


if __name__ == "__main__":
    main()
