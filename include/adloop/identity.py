"""Meta's normalization and SHA-256 hashing of customer data, for CAPI and Custom Audiences.

One module, so a customer hashes to the same value on every path. The rules are Meta's
customer-information rules (see reference/meta-apis.md, section 1.7 and 2.4):

| key | normalized form |
| --- | --- |
| `em` | trimmed, lowercase, checked for `local@domain.tld` |
| `ph` | digits only, leading `+`, `00` and trunk `0` removed, with the country calling code |
| `fn`, `ln` | lowercase letters only (letters beyond a-z kept, NFC), no punctuation or spaces |
| `ct` | as names: lowercase letters only, no digits, punctuation or spaces |
| `st` | a 2-letter code; US state and Canadian province names are mapped to their codes |
| `zp` | lowercase, no spaces or dashes; US: first 5 digits; Canada: all 6 characters |
| `country` | ISO 3166-1 alpha-2, lowercase; common names mapped to codes |
| `db` | YYYYMMDD, from YYYY-MM-DD, MM/DD/YYYY or YYYYMMDD |
| `external_id` | trimmed; case kept (see `_normalize_external_id`) |

Each value is then hashed as the lowercase hex SHA-256 of its UTF-8 bytes. A value that is
already a SHA-256 hex digest passes through lowercased. A value that cannot be normalized gets
no hash and an error that names the key and the problem, never the clear value.

Everything works on whole pandas columns, because audiences run to millions of rows. pandas is
imported inside the functions so `import adloop.identity` stays cheap for the CLI.
"""

from __future__ import annotations

import datetime
import hashlib
import re
import unicodedata
from collections.abc import Callable
from itertools import compress
from typing import TYPE_CHECKING, NamedTuple, TextIO

try:
    # CPython's own SHA-256 (module _sha256 up to 3.11, _sha2 from 3.12) hashes short inputs
    # about 15% faster than OpenSSL 3's, whose per-object setup dominates at 20-40 bytes.
    # The digests are identical (tests check it); any other Python falls back to hashlib.
    from _sha256 import sha256 as _sha256
except ImportError:  # pragma: no cover - depends on the interpreter
    try:
        from _sha2 import sha256 as _sha256
    except ImportError:
        _sha256 = hashlib.sha256

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

# Bump when a rule changes what a value hashes to, so stored hashes can be told apart.
NORMALIZATION_VERSION = 1

# The form adloop sends: a SHA-256 digest as 64 lowercase hex characters.
HASHED_KEY_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_ANY_CASE_HASH = re.compile(r"[0-9a-fA-F]{64}")

KEYS = ("em", "ph", "fn", "ln", "ct", "st", "zp", "country", "db", "external_id")

# Input column -> Meta key. Column names are compared after lowercasing and turning spaces and
# dashes into underscores, so "First Name" is first_name. The keys themselves are accepted too.
INPUT_COLUMNS = {
    "email": "em",
    "phone": "ph",
    "first_name": "fn",
    "last_name": "ln",
    "city": "ct",
    "state": "st",
    "zip": "zp",
    "country": "country",
    "date_of_birth": "db",
    "external_id": "external_id",
} | {key: key for key in KEYS}

# Keys whose values repeat a lot across a customer list (many people share a city, a first
# name, a birthday). These are normalized and hashed once per distinct value.
_DEDUPLICATED_KEYS = frozenset({"fn", "ln", "ct", "st", "zp", "country", "db"})
_COUNTRY_DEPENDENT_KEYS = frozenset({"ph", "st", "zp"})

# Calling code and the lengths of a national number (after its trunk "0") per country.
# Not covered: countries missing here (a number from them is accepted only with its country
# code, written +CC or 00CC, or as 11 to 15 digits when its country is unknown); Italy and
# San Marino, whose leading 0 is part of the number, not a trunk prefix; numbers whose lengths
# vary more than listed (parts of Germany and Austria); NANP territories with their own ISO
# codes (PR, JM, ...). Lengths are the common ones, not a full numbering-plan check.
_CALLING_CODES: dict[str, tuple[str, frozenset[int]]] = {
    "ca": ("1", frozenset({10})),
    "us": ("1", frozenset({10})),
    "gb": ("44", frozenset({9, 10})),
    "ie": ("353", frozenset({7, 8, 9})),
    "au": ("61", frozenset({9})),
    "nz": ("64", frozenset({8, 9, 10})),
    "fr": ("33", frozenset({9})),
    "de": ("49", frozenset({7, 8, 9, 10, 11})),
    "es": ("34", frozenset({9})),
    "nl": ("31", frozenset({9})),
    "mx": ("52", frozenset({10})),
    "br": ("55", frozenset({10, 11})),
    "in": ("91", frozenset({10})),
    "ph": ("63", frozenset({8, 9, 10})),
    "cn": ("86", frozenset({10, 11})),
    "jp": ("81", frozenset({9, 10})),
}
_NANP = frozenset(country for country, (code, _) in _CALLING_CODES.items() if code == "1")

# E.164 allows at most 15 digits with the country code; few real numbers have fewer than 8.
_INTERNATIONAL_LENGTHS = range(8, 16)

# Characters people put between the digits of a phone number.
_PHONE_FORMATTING = b" \t-().,/"
_ZERO, _NINE, _PLUS = ord("0"), ord("9"), ord("+")
# Bytes the column-at-once email check looks for.
_NEWLINE, _SPACE, _AT, _DOT, _DEL = ord("\n"), ord(" "), ord("@"), ord("."), 0x7F
_PHONE_EXTENSION = re.compile(r"\s*(?:ext\.?|extension|x|#)\s*\d+\s*$", re.IGNORECASE)

_NOT_A_TO_Z = re.compile(r"[^a-z]+")
_ZIP_SEPARATORS = str.maketrans("", "", " \t-")

# Canadian provinces and territories (English and French names) and US states, DC and
# territories, written as lowercase ASCII letters without spaces.
_STATE_NAMES = {
    "alberta": "ab",
    "britishcolumbia": "bc",
    "colombiebritannique": "bc",
    "manitoba": "mb",
    "newbrunswick": "nb",
    "nouveaubrunswick": "nb",
    "newfoundlandandlabrador": "nl",
    "newfoundland": "nl",
    "terreneuveetlabrador": "nl",
    "novascotia": "ns",
    "nouvelleecosse": "ns",
    "northwestterritories": "nt",
    "territoiresdunordouest": "nt",
    "nunavut": "nu",
    "ontario": "on",
    "princeedwardisland": "pe",
    "ileduprinceedouard": "pe",
    "quebec": "qc",
    "saskatchewan": "sk",
    "yukon": "yt",
    # Canada Post's traditional abbreviations, still common in customer records.
    "alta": "ab",
    "sask": "sk",
    "man": "mb",
    "ont": "on",
    "que": "qc",
    "nfld": "nl",
    "alabama": "al",
    "alaska": "ak",
    "arizona": "az",
    "arkansas": "ar",
    "california": "ca",
    "colorado": "co",
    "connecticut": "ct",
    "delaware": "de",
    "florida": "fl",
    "georgia": "ga",
    "hawaii": "hi",
    "idaho": "id",
    "illinois": "il",
    "indiana": "in",
    "iowa": "ia",
    "kansas": "ks",
    "kentucky": "ky",
    "louisiana": "la",
    "maine": "me",
    "maryland": "md",
    "massachusetts": "ma",
    "michigan": "mi",
    "minnesota": "mn",
    "mississippi": "ms",
    "missouri": "mo",
    "montana": "mt",
    "nebraska": "ne",
    "nevada": "nv",
    "newhampshire": "nh",
    "newjersey": "nj",
    "newmexico": "nm",
    "newyork": "ny",
    "northcarolina": "nc",
    "northdakota": "nd",
    "ohio": "oh",
    "oklahoma": "ok",
    "oregon": "or",
    "pennsylvania": "pa",
    "rhodeisland": "ri",
    "southcarolina": "sc",
    "southdakota": "sd",
    "tennessee": "tn",
    "texas": "tx",
    "utah": "ut",
    "vermont": "vt",
    "virginia": "va",
    "washington": "wa",
    "westvirginia": "wv",
    "wisconsin": "wi",
    "wyoming": "wy",
    "districtofcolumbia": "dc",
    "puertorico": "pr",
    "guam": "gu",
    "americansamoa": "as",
    "northernmarianaislands": "mp",
    "usvirginislands": "vi",
}
_CA_PROVINCES = frozenset({"ab", "bc", "mb", "nb", "nl", "ns", "nt", "nu", "on", "pe", "qc", "sk", "yt"})
_US_STATES = frozenset(_STATE_NAMES.values()) - _CA_PROVINCES

# Names people write that ISO 3166 (and pycountry) does not list, as lowercase letters only.
_COUNTRY_ALIASES = {
    "usa": "us",
    "america": "us",
    "unitedstatesofamerica": "us",
    "uk": "gb",
    "britain": "gb",
    "greatbritain": "gb",
    "england": "gb",
    "scotland": "gb",
    "wales": "gb",
    "northernireland": "gb",
    "russia": "ru",
    "deutschland": "de",
    "holland": "nl",
    "southkorea": "kr",
    "korea": "kr",
    "vietnam": "vn",
}

_US_ZIP = re.compile(r"\d{5}(?:\d{4})?")
_CA_POSTAL_CODE = re.compile(r"[a-z]\d[a-z]\d[a-z]\d")

_DATE_FORMATS = (
    # YYYY-MM-DD (also with "/" or "."), optionally followed by a time, as databases export it.
    (re.compile(r"(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?:[ T].*)?"), ("y", "m", "d")),
    # MM/DD/YYYY, Meta's own example (2/16/1997). Day-first dates are not guessed at.
    (re.compile(r"(\d{1,2})[/-](\d{1,2})[/-](\d{4})"), ("m", "d", "y")),
    (re.compile(r"(\d{4})(\d{2})(\d{2})"), ("y", "m", "d")),
)
_OLDEST_BIRTH_YEAR = 1900


def is_hashed(value: object) -> bool:
    """True when value is already a SHA-256 hex digest (64 hex characters, either case)."""
    return isinstance(value, str) and _ANY_CASE_HASH.fullmatch(value.strip()) is not None


def normalize(
    key: str,
    values: pd.Series,
    *,
    default_country: str | None = None,
    country: pd.Series | None = None,
) -> tuple[pd.Series, pd.Series]:
    """Normalize one column of customer data by Meta's rules for `key`.

    Returns (normalized, errors), both aligned with `values`: a normalized value or NA, and an
    error such as `ph: 7 digits, ...` or NA. Empty and missing values give NA in both.
    Already-hashed values come back lowercased, as they are.

    `default_country` (ISO alpha-2) gives phones without a country code their calling code.
    `country` (per row, a code or a name) overrides it row by row, and also picks the ZIP and
    state rules (US, Canada, elsewhere); without it those follow the value's shape.
    """
    column = _normalize_column(key, _text(values), _row_country(values, country), default_country, False)
    return column.series(column.normalized, values.index), column.series(column.errors, values.index)


def hash_normalized(values: pd.Series) -> pd.Series:
    """SHA-256 (lowercase hex of the UTF-8 bytes) of each normalized value; NA stays NA."""
    import numpy as np
    import pandas as pd

    text = _text(values)
    present = pd.notna(text)
    hashed = np.full(len(text), None, dtype=object)
    hashed[present] = _sha256_all(text[present])
    return pd.Series(hashed, index=values.index, dtype="str")


def hash_one(key: str, value: str | None, default_country: str | None = None) -> str | None:
    """Normalize and hash one value, for one-off use such as a webhook.

    Returns None for an empty value, and raises ValueError (with a message free of the clear
    value) when the value cannot be normalized.
    """
    import numpy as np

    column = _normalize_column(
        key, np.array([np.nan if value is None else value], dtype=object), None, default_country, True
    )
    error = column.rows(column.errors)[0]
    if error is not None:
        raise ValueError(error)
    return column.rows(column.hashed)[0]


def hash_frame(df: pd.DataFrame, *, default_country: str | None = "CA") -> pd.DataFrame:
    """Normalize and hash a frame of customers, one row per customer.

    Input columns: any of email, phone, first_name, last_name, city, state, zip, country,
    date_of_birth, external_id (or the Meta keys themselves; names are matched ignoring case,
    spaces and dashes). Other columns are ignored; a frame with columns but none of these raises
    ValueError.

    Output, same index: always all ten Meta key columns in `KEYS` order, hashed, NA where the
    input was empty, absent or invalid; then `errors`, the row's errors joined with "; ", or
    "" when there are none. A stable set of columns whatever the input had keeps the CSV and
    warehouse schema fixed.

    A row's own `country` decides its phone calling code and its state and ZIP rules;
    `default_country` gives the calling code to rows without one.
    """
    import numpy as np
    import pandas as pd

    columns = _map_columns(df.columns)
    if not columns and len(df.columns):
        # Columns, none of them known: a wrong header, most likely, not customers without data.
        raise ValueError(f"no customer-data column found; expected any of {', '.join(INPUT_COLUMNS)}")

    results: dict[str, _Column] = {}
    row_country = country_codes = None
    if "country" in columns:
        results["country"] = _normalize_column("country", _text(df[columns["country"]]), None, None, True)
        row_country = results["country"].rows(results["country"].normalized)
        country_codes = _country_codes(results["country"])
    for key in KEYS:
        if key != "country" and key in columns:
            results[key] = _normalize_column(
                key, _text(df[columns[key]]), row_country, default_country, True, country_codes
            )

    absent = pd.Series(np.nan, index=df.index, dtype="str")
    out = {
        key: results[key].series(results[key].hashed, df.index) if key in results else absent for key in KEYS
    }
    with_errors = [column for column in results.values() if (column.errors != None).any()]  # noqa: E711
    errors = _join_errors([column.rows(column.errors) for column in with_errors], len(df))
    out["errors"] = _str_series(errors, df.index)
    return pd.DataFrame(out, index=df.index, copy=False)


def hash_csv(
    src: TextIO,
    dst: TextIO,
    *,
    default_country: str | None,
    chunk_rows: int = 100_000,
) -> dict:
    """Stream a CSV of customers through `hash_frame` into a CSV of hashes, chunk by chunk.

    Memory stays flat whatever the file size. The output has the `hash_frame` columns, empty
    where the input was empty or invalid. Returns counts for the log line: rows,
    rows_with_errors, and ignored_columns (input columns adloop does not know).
    """
    import pandas as pd

    counts = {"rows": 0, "rows_with_errors": 0, "ignored_columns": []}
    # Read everything as text, and keep "NA", "null" and friends as text: "Na" is a surname.
    chunks = pd.read_csv(src, dtype=str, keep_default_na=False, chunksize=chunk_rows)
    first = True
    for chunk in chunks:
        if first:
            known = set(_map_columns(chunk.columns).values())
            counts["ignored_columns"] = [column for column in chunk.columns if column not in known]
        hashed = hash_frame(chunk, default_country=default_country)
        hashed.to_csv(dst, header=first, index=False, lineterminator="\n")
        counts["rows"] += len(hashed)
        counts["rows_with_errors"] += int((hashed["errors"] != "").sum())
        first = False

    if first:
        # Only a header, or nothing: still write a header, so the output is a valid CSV.
        dst.write(",".join([*KEYS, "errors"]) + "\n")
    return counts


# --- the column pipeline -------------------------------------------------------------------
#
# Without pyarrow (not in requirements.txt), pandas keeps "str" columns as Python objects and
# each `.str` method is a Python loop with pandas' NA bookkeeping around it. Measured over 1M
# values, a list comprehension calling the same str method is 2-3x faster, and one pass that
# does several steps beats a chain of `.str` calls. So the per-value steps below are list
# comprehensions over the column's object array, and pandas does what it does vectorized:
# factorizing repeated values, masks, takes and the final columns. Emails and phones, unique
# per row, go further: their common shapes are checked on the UTF-8 bytes of the whole column,
# joined by newlines, with numpy (`_pack`), and hashed from those bytes.
#
# Internally a column is a numpy object array of str, with None (or NaN on the way in) for
# missing values; results use None.


class _Column(NamedTuple):
    """One column's results: object arrays of str, None where not set.

    When `codes` is set, the arrays hold one entry per distinct input and `codes` gives each
    row's entry, so a million rows of "Edmonton" are normalized and hashed once. When hashed,
    `normalized` is None where a fast path settled the value: only hashes and errors are read
    then, and the text of a million emails and phones costs as much to make as to check.
    """

    normalized: np.ndarray
    hashed: np.ndarray | None
    errors: np.ndarray
    codes: np.ndarray | None = None

    def rows(self, part: np.ndarray) -> np.ndarray:
        return part if self.codes is None else part[self.codes]

    def series(self, part: np.ndarray, index: pd.Index) -> pd.Series:
        import pandas as pd

        if self.codes is None:
            return _str_series(part, index)
        # Taking from the distinct values as a string array skips re-checking every row.
        return pd.Series(pd.array(part, dtype="str").take(self.codes), index=index)


def _str_series(part: np.ndarray, index: pd.Index) -> pd.Series:
    """A "str" Series over an object array of str and None that the caller made and hands over.

    pd.Series(part, dtype="str") converts every value, which costs four times as much on a
    million hashes as the StringArray constructor, which only checks them and keeps the array.
    The "str" dtype stores missing values as NaN, so None becomes NaN first, in place: `part`
    is not read again."""
    import numpy as np
    import pandas as pd

    part[part == None] = np.nan  # noqa: E711 (elementwise on an object array)
    return pd.Series(pd.arrays.StringArray(part, dtype=pd.StringDtype(na_value=np.nan)), index=index)


def _normalize_column(
    key: str,
    values: np.ndarray,
    row_country: np.ndarray | None,
    default_country: str | None,
    hash_values: bool,
    country_codes: np.ndarray | None = None,
) -> _Column:
    """Normalize (and hash if asked) one column. `country_codes` (optional) are per-row codes of
    `row_country`, from `_country_codes`."""
    import numpy as np

    if key not in _NORMALIZERS:
        raise ValueError(f"unknown customer-data key {key!r}; expected one of {', '.join(KEYS)}")
    default = _default_country(default_country)
    # The default country only lends phones a calling code. ZIP and state rules follow the
    # row's own country, else the value's shape: a US ZIP in a Canadian list is still a ZIP.
    if key == "ph" and default is not None:
        if row_country is None:
            row_country = np.full(len(values), default, dtype=object)
        else:
            row_country = np.where(row_country == None, default, row_country)  # noqa: E711 (elementwise)
        country_codes = None
    if key not in _COUNTRY_DEPENDENT_KEYS:
        row_country = None

    if key not in _DEDUPLICATED_KEYS:
        return _Column(*_normalize_present(key, values, row_country, hash_values))

    # Normalize and hash each distinct value (with its country, where the rules depend on it)
    # once.
    codes, firsts = _distinct_rows(values, row_country, country_codes)
    distinct = _normalize_present(
        key, values[firsts], row_country[firsts] if row_country is not None else None, hash_values
    )
    return _Column(*distinct, codes=codes)


def _normalize_present(
    key: str, values: np.ndarray, row_country: np.ndarray | None, hash_values: bool
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Run a key's fast path (if it has one) over the present values, then the full rules
    (empty values, hashes passed through, the key's normalizer and its errors) on the rest."""
    import numpy as np

    size = len(values)
    normalized = np.full(size, None, dtype=object)
    hashed = np.full(size, None, dtype=object) if hash_values else None
    errors = np.full(size, None, dtype=object)
    # Missing values arrive as NaN (pandas' "str" dtype), the only value unequal to itself;
    # comparing the array with itself is 3x faster than pd.notna on strings.
    present = values == values
    everything = present.all()
    rows = np.arange(size) if everything else np.flatnonzero(present)
    country = row_country if row_country is None or everything else row_country[rows]

    fast = _FAST_PATHS.get(key)
    if fast is not None:
        settled = fast(values if everything else values[rows], country)
        done = rows[settled.rows]
        # Hashing reads the fast path's bytes directly; the normalized text is made only when
        # it is asked for, as it costs as much as the checks that settled the values.
        if hash_values:
            hashed[done] = _sha256_encoded(settled.encoded)
        else:
            normalized[done] = [value.decode() for value in settled.encoded]
        left = np.ones(len(rows), dtype=bool)
        left[settled.rows] = False
        rows = rows[left]
        country = country[left] if country is not None else None

    if len(rows):
        normalized[rows], errors[rows], is_hash = _normalize_by_rule(key, values[rows], country)
        if hash_values:
            prehashed = rows[is_hash]
            hashed[prehashed] = normalized[prehashed]
            todo = rows[~is_hash & (normalized[rows] != None)]  # noqa: E711 (elementwise on an object array)
            hashed[todo] = _sha256_all(normalized[todo])
    return normalized, hashed, errors


def _normalize_by_rule(
    key: str, values: np.ndarray, country: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The full rules for present values: empty stays empty, a hash passes through lowercased,
    the rest goes through the key's normalizer. Returns (normalized, errors, is_hash)."""
    import numpy as np

    normalized = np.full(len(values), None, dtype=object)
    errors = np.full(len(values), None, dtype=object)
    stripped = np.array([v.strip() for v in values], dtype=object)
    lengths = np.fromiter(map(len, stripped), dtype=np.int64, count=len(stripped))

    # Only a 64-character value can be a hash, so the regex runs on those alone.
    is_hash = lengths == 64
    if is_hash.any():
        is_hash[is_hash] = [_ANY_CASE_HASH.fullmatch(v) is not None for v in stripped[is_hash]]
        normalized[is_hash] = [v.lower() for v in stripped[is_hash]]

    todo = np.flatnonzero((lengths > 0) & ~is_hash)
    if len(todo):
        normalized[todo], errors[todo] = _NORMALIZERS[key](
            stripped[todo], country[todo] if country is not None else None
        )
    return normalized, errors, is_hash


def _sha256_all(values: np.ndarray) -> list[str]:
    sha256 = _sha256
    return [sha256(value.encode()).hexdigest() for value in values]


def _sha256_encoded(values: list[bytes]) -> np.ndarray:
    import numpy as np

    sha256 = _sha256
    # Filled straight from the generator: a list would be converted into a new array when the
    # caller assigns it, a second pass over a million objects.
    return np.fromiter((sha256(value).hexdigest() for value in values), dtype=object, count=len(values))


def _text(values: pd.Series) -> np.ndarray:
    """The column as an object array of str, NaN where missing."""
    import pandas as pd

    if values.dtype != pd.StringDtype(na_value=float("nan")):
        # pandas' default "str" dtype, with NaN for missing. Numbers become text ("12345"); a
        # phone or ZIP read as a float ("7805550134.0") is the caller's bug: read CSVs as str.
        values = values.astype("str")
    return values.to_numpy(dtype=object)


def _default_country(default_country: str | None) -> str | None:
    if not default_country:
        return None
    default = default_country.strip().lower()
    if default not in _iso_countries():
        raise ValueError(f'default_country "{default_country}" is not an ISO 3166-1 alpha-2 code')
    return default


def _row_country(values: pd.Series, country: pd.Series | None) -> np.ndarray | None:
    """Per-row lowercase ISO code (None where missing or unknown) from a column of countries."""
    if country is None:
        return None
    if len(country) != len(values):
        raise ValueError(f"country has {len(country)} rows, values {len(values)}")
    column = _normalize_column("country", _text(country), None, None, False)
    return column.rows(column.normalized)


def _distinct_rows(
    values: np.ndarray, row_country: np.ndarray | None, country_codes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Codes of the distinct rows (by value, and by country when given), and one row per code.

    `country_codes`, when given, are codes of `row_country` already made (`_country_codes`), so
    the columns that depend on the country do not factorize it again, one each."""
    import numpy as np
    import pandas as pd

    # With the NA sentinel pandas skips its own pass looking for missing values over the object
    # array; missing values (all NaN here) then share the code after the last distinct value.
    codes, uniques = pd.factorize(values)
    missing = codes < 0
    if missing.any():
        codes[missing] = len(uniques)
    if row_country is not None:
        if country_codes is None:
            country_codes = pd.factorize(row_country, use_na_sentinel=False)[0]
        countries = country_codes.max() + 1 if len(country_codes) else 0
        if countries > 1:
            codes, _ = pd.factorize(codes.astype(np.int64) * countries + country_codes)
    firsts = np.empty(codes.max() + 1 if len(codes) else 0, dtype=np.int64)
    # Writing positions in reverse leaves each code's first row.
    firsts[codes[::-1]] = np.arange(len(codes) - 1, -1, -1)
    return codes, firsts


def _country_codes(country: _Column) -> np.ndarray:
    """Per-row codes of a normalized country column, made from its distinct values (a handful)
    instead of a factorize over every row."""
    import pandas as pd

    distinct, _ = pd.factorize(country.normalized, use_na_sentinel=False)
    return distinct if country.codes is None else distinct[country.codes]


def _join_errors(errors: list[np.ndarray], size: int) -> np.ndarray:
    import numpy as np

    joined = np.full(size, "", dtype=object)
    if not errors:
        return joined
    failed = np.zeros(size, dtype=bool)
    for key_errors in errors:
        failed |= key_errors != None  # noqa: E711 (elementwise on an object array)
    for row in np.flatnonzero(failed):
        joined[row] = "; ".join(e[row] for e in errors if e[row] is not None)
    return joined


def _map_columns(columns: pd.Index) -> dict[str, str]:
    """Meta key -> input column, for the input columns adloop knows."""
    mapped = {}
    for column in columns:
        name = str(column).strip().lower().replace(" ", "_").replace("-", "_")
        key = INPUT_COLUMNS.get(name)
        if key is not None and key not in mapped:
            mapped[key] = column
    return mapped


# --- one normalizer per key ----------------------------------------------------------------
# Each takes an object array of stripped, non-empty values that are not hashes (and the rows'
# countries, or None) and returns (normalized, errors): object arrays of the same length, each
# None where the other is set.


def _split(results: list[tuple[str | None, str | None]]) -> tuple[np.ndarray, np.ndarray]:
    import numpy as np

    normalized = np.empty(len(results), dtype=object)
    errors = np.empty(len(results), dtype=object)
    normalized[:] = [value for value, _ in results]
    errors[:] = [error for _, error in results]
    return normalized, errors


class _Settled(NamedTuple):
    """What a fast path settled: the positions of those values and their normalized forms,
    as UTF-8 bytes, in the same order."""

    rows: np.ndarray
    encoded: list[bytes]


class _Packed(NamedTuple):
    """A column's values as one buffer of UTF-8 bytes, so checks run over the whole column at once.

    Value i is `data[starts[i]:ends[i]]`, and a newline separates values (a value that holds a
    newline itself is packed as an empty value, which no fast path settles). `marks` are the
    positions of the bytes the packer was asked to find, newlines aside, with the byte found
    (`found`) and the index of the value it is in (`owners`).
    """

    data: bytes
    starts: np.ndarray
    ends: np.ndarray
    marks: np.ndarray
    found: np.ndarray
    owners: np.ndarray

    def first_bytes(self) -> np.ndarray:
        """Each value's first byte (0 for an empty value at the end of the buffer)."""
        import numpy as np

        buffer = np.frombuffer(self.data + b"\0", dtype=np.uint8)
        return buffer[self.starts]

    def split(self) -> list[bytes]:
        return self.data.split(b"\n") if len(self.starts) else []


def _pack(values: list[str], marked: Callable[[np.ndarray], np.ndarray], delete: bytes = b"") -> _Packed:
    """Pack values into one buffer, with the `delete` bytes taken out, and find the bytes for
    which `marked` (over the buffer) is True."""
    import numpy as np

    # "surrogatepass", so a stray surrogate is packed (and never settled) instead of raising here.
    data = "\n".join(values).encode("utf-8", "surrogatepass")
    if delete:
        data = data.translate(None, delete)
    buffer = np.frombuffer(data, dtype=np.uint8)

    # The value a byte is in is the number of newlines before it: counted over the marked bytes
    # only (a few per value), not over the whole buffer.
    marks = np.flatnonzero(marked(buffer) | (buffer == _NEWLINE))
    found = buffer[marks]
    newline = found == _NEWLINE
    separators = marks[newline]
    if len(separators) != max(len(values) - 1, 0):
        return _pack(["" if "\n" in v else v for v in values], marked, delete)
    starts = np.zeros(len(values), dtype=np.int64)
    starts[1:] = separators + 1
    ends = np.full(len(values), len(buffer), dtype=np.int64)
    ends[:-1] = separators
    other = ~newline
    return _Packed(data, starts, ends, marks[other], found[other], np.cumsum(newline)[other])


def _email_fast(values: np.ndarray, country: np.ndarray | None) -> _Settled:
    """Addresses that are plainly valid, trimmed and lowercased; the rest is left to the rules.

    The checks of `_is_email`, made on the UTF-8 bytes of the whole column at once: calling a
    function per value costs about as much as hashing the value does.
    """
    import numpy as np

    lowered = [v.strip().lower() for v in values]
    packed = _pack(lowered, _email_marks)
    valid = _valid_emails(packed)
    rows = np.flatnonzero(valid)
    pieces = packed.split()
    return _Settled(rows, pieces if len(rows) == len(pieces) else list(compress(pieces, valid.tolist())))


def _email_marks(buffer: np.ndarray) -> np.ndarray:
    return (buffer <= _SPACE) | (buffer == _AT) | (buffer == _DOT) | (buffer == _DEL)


def _valid_emails(packed: _Packed) -> np.ndarray:
    """Which (trimmed, lowercased) values `_is_email` accepts. The UTF-8 bytes of non-ASCII
    characters are all >= 0x80, so an "@", a "." or a control byte is found the same whatever
    script surrounds it."""
    import numpy as np

    starts, ends, marks, found, owners = packed.starts, packed.ends, packed.marks, packed.found, packed.owners
    size = len(starts)

    at = found == _AT
    valid = np.bincount(owners[at], minlength=size) == 1
    at_of = ends.copy()  # without an "@" there is no domain
    at_of[owners[at]] = marks[at]
    valid &= at_of > starts  # something before the "@"
    # No space and no ASCII control character (non-ASCII ones are checked below).
    valid[owners[(found <= _SPACE) | (found == _DEL)]] = False

    dots, dot_owners = marks[found == _DOT], owners[found == _DOT]
    in_domain = dots > at_of[dot_owners]
    dots, dot_owners = dots[in_domain], dot_owners[in_domain]
    has_dot = np.zeros(size, dtype=bool)
    has_dot[dot_owners] = True
    valid &= has_dot
    # An empty label: a "." first or last in the domain, or two in a row.
    valid[dot_owners[dots == at_of[dot_owners] + 1]] = False
    valid[dot_owners[dots == ends[dot_owners] - 1]] = False
    valid[dot_owners[1:][np.diff(dots) == 1]] = False

    # Non-ASCII characters: checked once per distinct character; in the rare column with an
    # unprintable one, every value with non-ASCII characters is left to the rules.
    buffer = np.frombuffer(packed.data, dtype=np.uint8)
    wide = buffer >= 0x80
    if wide.any():
        characters = set(buffer[wide].tobytes().decode("utf-8", "surrogatepass"))
        if not all(character.isprintable() for character in characters):
            valid[np.searchsorted(ends, np.flatnonzero(wide))] = False
    return valid


def _normalize_email(values: np.ndarray, country: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    lowered = [v.lower() for v in values]
    return _split(
        [
            (v, None) if _is_email(v) else (None, f"em: not an email address ({_email_problem(v)})")
            for v in lowered
        ]
    )


def _is_email(value: str) -> bool:
    """local@domain.tld with no spaces; string methods, twice as fast as the equivalent regex."""
    local, _, domain = value.partition("@")
    return bool(
        local
        and "." in domain
        and "@" not in domain
        and domain[0] != "."
        and domain[-1] != "."
        and ".." not in domain
        # No whitespace: isprintable() is False for every whitespace character but " ".
        and " " not in value
        and value.isprintable()
    )


def _email_problem(value: str) -> str:
    if "@" not in value:
        return 'no "@"'
    if value.count("@") > 1:
        return 'more than one "@"'
    if " " in value or not value.isprintable():
        return "contains a space or an invisible character"
    local, domain = value.split("@")
    if not local:
        return 'nothing before the "@"'
    if "." not in domain:
        return 'no "." in the domain'
    return 'an empty label in the domain: ".." or a "." at an end'


def _phone_fast(values: np.ndarray, country: np.ndarray | None) -> _Settled:
    """Numbers in the common shapes, country by country; the rest is left to the rules.

    National: "7805550134", "780-555-0134", "(780) 555 0134". With the row country's own
    calling code: "+1 780 555 0134", "1-780-555-0134".
    """
    import numpy as np
    import pandas as pd

    rows: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    encoded: list[bytes] = []
    if country is not None:
        # A customer list is mostly one country; checking that is cheaper than a factorize.
        if len(country) and (country == country[0]).all():
            codes, countries = np.zeros(len(country), dtype=np.intp), [country[0]]
        else:
            codes, countries = pd.factorize(country)
        for index, code in enumerate(countries):
            plan = _CALLING_CODES.get(code)
            if plan is None:
                continue
            of_country = np.flatnonzero(codes == index) if len(countries) > 1 else np.arange(len(codes))
            settled = _common_phones(values[of_country].tolist(), *plan)
            rows.append(of_country[settled.rows])
            encoded.extend(settled.encoded)
    return _Settled(np.concatenate(rows), encoded)


def _common_phones(values: list[str], calling_code: str, national_lengths: frozenset[int]) -> _Settled:
    """`_phone_fast` for the numbers of one country, checked over the whole column at once."""
    import numpy as np

    # The formatting characters go in one bytes.translate over the column; whatever is left that
    # is not an ASCII digit (letters, "+", non-ASCII bytes) keeps a value from being settled here.
    packed = _pack(values, lambda buffer: (buffer < _ZERO) | (buffer > _NINE), delete=_PHONE_FORMATTING)
    size, lengths, first = len(values), packed.ends - packed.starts, packed.first_bytes()
    not_digits = np.bincount(packed.owners, minlength=size)
    code = calling_code.encode()
    with_code = [n + len(code) for n in national_lengths]

    digits = (not_digits == 0) & (lengths > 0)
    national = digits & np.isin(lengths, list(national_lengths)) & (first != _ZERO)
    coded = digits & ~national & np.isin(lengths, with_code) & _starting_with(packed, code, 0)
    plus_coded = (not_digits == 1) & (first == _PLUS) & np.isin(lengths - 1, with_code)
    plus_coded &= _starting_with(packed, code, 1)

    pieces = np.array(packed.split(), dtype=object)
    encoded = [code + number for number in pieces[national]]
    encoded.extend(pieces[coded])
    encoded.extend(number[1:] for number in pieces[plus_coded])
    rows = np.concatenate([np.flatnonzero(national), np.flatnonzero(coded), np.flatnonzero(plus_coded)])
    return _Settled(rows, encoded)


def _starting_with(packed: _Packed, prefix: bytes, offset: int) -> np.ndarray:
    """Which values have `prefix` at byte `offset`."""
    import numpy as np

    buffer = np.frombuffer(packed.data + b"\0" * (offset + len(prefix)), dtype=np.uint8)
    found = packed.ends - packed.starts >= offset + len(prefix)
    for i, byte in enumerate(prefix):
        found &= buffer[packed.starts + offset + i] == byte
    return found


def _normalize_phone(values: np.ndarray, country: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    countries = country if country is not None else [None] * len(values)
    return _split([_phone(v, c) for v, c in zip(values, countries, strict=True)])


def _phone(value: str, country: str | None) -> tuple[str | None, str | None]:
    plan = _CALLING_CODES.get(country) if country is not None else None
    compact = value.encode().translate(None, _PHONE_FORMATTING)
    return _phone_with_code(compact, plan) or _unusual_phone(value, country, plan)


def _phone_with_code(compact: bytes, plan: tuple[str, frozenset[int]] | None) -> tuple[str, None] | None:
    """A number that already carries its country code: "+1 780 555 0134", "17805550134"."""
    if compact[:1] == b"+" and compact[1:].isdigit() and compact[1:2] != b"0":
        number, _ = _international_phone(compact[1:].decode())
        return (number, None) if number else None
    if plan is not None and compact.isdigit() and compact[:1] != b"0":
        code, national_lengths = plan
        if len(compact) - len(code) in national_lengths and compact.startswith(code.encode()):
            return compact.decode(), None
    return None


def _unusual_phone(
    value: str, country: str | None, plan: tuple[str, frozenset[int]] | None
) -> tuple[str | None, str | None]:
    """Whatever `_phone_fast` and `_phone_with_code` leave: extensions, letters, 00 and 011
    prefixes, trunk zeros, numbers from other countries, and every error."""
    value = _PHONE_EXTENSION.sub("", unicodedata.normalize("NFKC", value))
    written_plus = value.lstrip(" (").startswith("+")
    digits = "".join(c for c in value if c.isascii() and c.isdigit())
    number = digits.lstrip("0")
    zeros = len(digits) - len(number)

    # "+CC", "00CC", and "011 CC" as North Americans dial abroad (a NANP number never starts
    # with 0) all mean the country code follows.
    if written_plus or zeros >= 2:
        return _international_phone(number)
    if country in _NANP and zeros == 1 and number.startswith("11"):
        return _international_phone(number[2:])

    length = len(number)
    if length == 0:
        return None, "ph: no digits"
    if plan is None:
        # No calling code to add: accept a number long enough to carry its own.
        if zeros == 0 and 11 <= length <= 15:
            return number, None
        if country is None:
            problem = "no country to take a calling code from (set a default country)"
        else:
            problem = f'no calling code on file for country "{country}"'
        return None, f"ph: {length} digits and {problem}; or write it as +<country code> <number>"

    code, national_lengths = plan
    if length in national_lengths:
        return code + number, None
    if zeros == 0 and number.startswith(code) and length - len(code) in national_lengths:
        return number, None
    expected = " or ".join(str(n) for n in sorted(national_lengths))
    return None, (
        f"ph: {length} digits, expected a full phone number ({expected} digits for {country.upper()}, "
        f"or with the +{code} country code)"
    )


def _international_phone(number: str) -> tuple[str | None, str | None]:
    """A number written with its country code (+CC, 00CC or 011CC), CC first, no zeros before."""
    length = len(number)
    if length == 0:
        return None, "ph: no digits"
    for code, national_lengths in _CALLING_CODES.values():
        # Country calling codes are prefix-free, so the first that matches is the one.
        if number.startswith(code):
            if length - len(code) in national_lengths:
                return number, None
            expected = " or ".join(str(n + len(code)) for n in sorted(national_lengths))
            return None, f"ph: {length} digits with country code +{code}, expected {expected}"
    if length in _INTERNATIONAL_LENGTHS:
        return number, None
    return None, f"ph: {length} digits, expected 8 to 15 including the country code"


def _names(key: str) -> Callable[[np.ndarray, np.ndarray | None], tuple[np.ndarray, np.ndarray]]:
    """A normalizer that keeps lowercase letters only: for fn, ln and ct."""
    problem = f"{key}: no letters left after removing punctuation, digits and spaces"

    def normalize_letters(values: np.ndarray, country: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        return _split([(letters, None) if (letters := _letters(v)) else (None, problem) for v in values])

    return normalize_letters


def _letters(value: str) -> str:
    """Lowercase, NFC, and nothing but letters (and the combining marks some scripts need)."""
    value = value.lower()
    if value.isascii():
        return value if value.isalpha() else _NOT_A_TO_Z.sub("", value)
    value = unicodedata.normalize("NFC", value)
    return "".join(c for c in value if unicodedata.category(c)[0] in "LM")


def _normalize_state(values: np.ndarray, country: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    countries = country if country is not None else [None] * len(values)
    return _split([_state_code(_letters(v), c) for v, c in zip(values, countries, strict=True)])


def _state_code(letters: str, country: str | None) -> tuple[str | None, str | None]:
    code = _STATE_NAMES.get(_ascii_fold(letters), letters)
    if country in ("us", "ca"):
        known = _US_STATES if country == "us" else _CA_PROVINCES
        if code in known:
            return code, None
        region = "a US state" if country == "us" else "a Canadian province or territory"
        return None, f"st: not {region} (expected a 2-letter code or the full name)"
    if len(code) == 2:
        return code, None
    if country is None:
        return None, "st: not a 2-letter code, nor a US state or Canadian province name"
    # Outside North America Meta takes the region as lowercase letters without spaces.
    return (code, None) if code else (None, "st: no letters")


def _ascii_fold(value: str) -> str:
    if value.isascii():
        return value
    return "".join(c for c in unicodedata.normalize("NFKD", value) if not unicodedata.combining(c))


def _normalize_zip(values: np.ndarray, country: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    countries = country if country is not None else [None] * len(values)
    return _split([_zip_code(v, c) for v, c in zip(values, countries, strict=True)])


def _zip_code(value: str, country: str | None) -> tuple[str | None, str | None]:
    value = value.lower().translate(_ZIP_SEPARATORS)
    if country == "us" or (country is None and _US_ZIP.fullmatch(value)):
        if _US_ZIP.fullmatch(value):
            return value[:5], None
        return None, "zp: not a US ZIP code (expected 5 digits, or ZIP+4)"
    if country == "ca" or (country is None and _CA_POSTAL_CODE.fullmatch(value)):
        if _CA_POSTAL_CODE.fullmatch(value):
            return value, None
        return None, "zp: not a Canadian postal code (expected the 6 characters of A1A 1A1)"
    if value.isalnum():
        return value, None
    return None, "zp: has characters other than letters, digits, spaces and dashes"


def _normalize_country(values: np.ndarray, country: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    return _split([_country_code(v) for v in values])


def _country_code(value: str) -> tuple[str | None, str | None]:
    letters = "".join(c for c in value.lower() if c.isalpha())
    if len(letters) == 2 and letters in _iso_countries():
        return letters, None
    alias = _COUNTRY_ALIASES.get(letters)
    if alias:
        return alias, None

    import pycountry

    try:
        return pycountry.countries.lookup(value).alpha_2.lower(), None
    except LookupError:
        pass
    # A country alone identifies nobody, so the message may quote it (shortened).
    shown = value if len(value) <= 40 else value[:37] + "..."
    return None, f'country: "{shown}" is not an ISO 3166-1 alpha-2 code or a known country name'


_ISO_COUNTRIES: frozenset[str] | None = None


def _iso_countries() -> frozenset[str]:
    global _ISO_COUNTRIES
    if _ISO_COUNTRIES is None:
        import pycountry

        _ISO_COUNTRIES = frozenset(c.alpha_2.lower() for c in pycountry.countries)
    return _ISO_COUNTRIES


def _normalize_date_of_birth(values: np.ndarray, country: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    today = datetime.date.today()
    return _split([_birth_date(v, today) for v in values])


def _birth_date(value: str, today: datetime.date) -> tuple[str | None, str | None]:
    for pattern, order in _DATE_FORMATS:
        match = pattern.fullmatch(value)
        if match is None:
            continue
        parts = dict(zip(order, map(int, match.groups()), strict=True))
        if order[0] == "m" and parts["m"] > 12 >= parts["d"]:
            return None, "db: month over 12 (expected MM/DD/YYYY; day-first dates are not accepted)"
        try:
            born = datetime.date(parts["y"], parts["m"], parts["d"])
        except ValueError:
            return None, "db: not a real calendar date"
        if born.year < _OLDEST_BIRTH_YEAR or born > today:
            return None, f"db: year out of range (expected {_OLDEST_BIRTH_YEAR} to this year)"
        return born.strftime("%Y%m%d"), None
    return None, "db: unrecognized date format (expected YYYY-MM-DD, MM/DD/YYYY or YYYYMMDD)"


def _normalize_external_id(values: np.ndarray, country: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    # Meta asks for the same external_id on every channel and gives no case rule, so adloop
    # only trims it. Lowercasing would merge ids that differ by case (Stripe's cus_... ids do),
    # and the Pixel must hash exactly this trimmed value to match.
    import numpy as np

    return values, np.full(len(values), None, dtype=object)


# Keys with a fast path: a pass over all present values that settles the common shapes and
# leaves None for `_normalize_by_rule` (empty values, hashes, odd shapes and every error).
_FAST_PATHS = {"em": _email_fast, "ph": _phone_fast}

_NORMALIZERS = {
    "em": _normalize_email,
    "ph": _normalize_phone,
    "fn": _names("fn"),
    "ln": _names("ln"),
    # Meta recommends a-z for cities; like the SDK's CAPI path, letters beyond it are kept
    # (UTF-8, NFC) rather than dropped, so "Montréal" is "montréal", not "montral".
    "ct": _names("ct"),
    "st": _normalize_state,
    "zp": _normalize_zip,
    "country": _normalize_country,
    "db": _normalize_date_of_birth,
    "external_id": _normalize_external_id,
}
