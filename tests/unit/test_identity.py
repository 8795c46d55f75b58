"""Meta normalization and hashing of customer data (adloop.identity).

Expected hashes are computed here with hashlib from the normalized strings; where Meta's docs
print a hash (reference/meta-apis.md, sections 1.7 and 2.4), its documented prefix and suffix
are checked against that computation too.
"""

from __future__ import annotations

import hashlib
import io
import unicodedata

import pandas as pd
import pytest

from adloop import identity
from adloop.identity import (
    HASHED_KEY_PATTERN,
    KEYS,
    NORMALIZATION_VERSION,
    hash_csv,
    hash_frame,
    hash_normalized,
    hash_one,
    is_hashed,
    normalize,
)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def normalized(key: str, value: str | None, **kwargs) -> str | None:
    values, errors = normalize(key, pd.Series([value], dtype="str"), **kwargs)
    assert pd.isna(errors.iloc[0]), errors.iloc[0]
    return None if pd.isna(values.iloc[0]) else values.iloc[0]


def error(key: str, value: str, **kwargs) -> str:
    values, errors = normalize(key, pd.Series([value], dtype="str"), **kwargs)
    assert pd.isna(values.iloc[0]), f"{value!r} normalized to {values.iloc[0]!r}, expected an error"
    return errors.iloc[0]


# --- Meta's documented examples --------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "raw", "kwargs", "expected", "documented_prefix", "documented_suffix"),
    [
        ("em", "John_Smith@gmail.com", {}, "john_smith@gmail.com", "62a14e44", "0f62f"),
        ("ph", "(650)555-1212", {"default_country": "US"}, "16505551212", "e323ec62", "3176"),
        ("fn", "Valéry", {}, "valéry", "08e1996b", ""),
        ("country", "United States", {}, "us", "79adb2a2", ""),
        ("db", "2/16/1997", {}, "19970216", "01acdbf6", ""),
        ("em", "mary@example.com", {}, "mary@example.com", "f1904cf1", "bb79"),
        ("ph", "+1 555 987 6543", {}, "15559876543", "1ef97083", "6a4e"),
    ],
)
def test_meta_documented_examples(key, raw, kwargs, expected, documented_prefix, documented_suffix):
    assert normalized(key, raw, **kwargs) == expected

    digest = hash_one(key, raw, default_country=kwargs.get("default_country"))
    assert digest == sha256(expected)
    assert digest.startswith(documented_prefix)
    assert digest.endswith(documented_suffix)


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("fn", "Mary", "mary"),
        ("ct", "New York", "newyork"),
        ("st", "CA", "ca"),
        ("st", "California", "ca"),
        ("zp", "94035", "94035"),
        ("zp", "94035-1234", "94035"),
        ("zp", "940351234", "94035"),
        ("country", "US", "us"),
    ],
)
def test_meta_rules_per_key(key, raw, expected):
    assert normalized(key, raw) == expected


def test_uk_postcode_keeps_letters_and_digits_without_spaces():
    assert normalized("zp", "M1 1AE", country=pd.Series(["GB"])) == "m11ae"


# --- an Edmonton customer list -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "raw", "expected"),
    [
        ("fn", "Zoë", "zoë"),
        ("fn", "Hélène", "hélène"),
        ("ln", "O'Brien", "obrien"),
        ("ln", "O’Brien", "obrien"),
        ("ln", "Smith-Jones", "smithjones"),
        ("ln", "St. Pierre", "stpierre"),
        ("fn", "Ana María", "anamaría"),
        ("ct", "St. Albert", "stalbert"),
        ("ct", " EDMONTON ", "edmonton"),
        ("ct", "Montréal", "montréal"),
        ("st", "Alberta", "ab"),
        ("st", "AB", "ab"),
        ("st", "Alta.", "ab"),
        ("st", "Québec", "qc"),
        ("zp", "T5J 0N3", "t5j0n3"),
        ("zp", "t5j0n3", "t5j0n3"),
        ("country", "Canada", "ca"),
        ("country", "U.S.A.", "us"),
        ("country", "UK", "gb"),
    ],
)
def test_edmonton_values(key, raw, expected):
    assert normalized(key, raw) == expected


def test_names_are_nfc_so_composed_and_decomposed_accents_hash_alike():
    decomposed = unicodedata.normalize("NFD", "Hélène")
    assert decomposed != "Hélène"
    assert hash_one("fn", decomposed) == hash_one("fn", "Hélène") == sha256("hélène")


@pytest.mark.parametrize(
    "raw",
    [
        "780-555-0134",
        "(780) 555-0134",
        "780.555.0134",
        "7805550134",
        "+1 (780) 555 0134",
        "1-780-555-0134",
        "+17805550134",
        "001 780 555 0134",
        "780 555 0134 ext. 12",
    ],
)
def test_local_phone_numbers_get_the_canadian_calling_code(raw):
    assert normalized("ph", raw, default_country="CA") == "17805550134"


def test_phone_calling_code_comes_from_the_rows_country_before_the_default():
    phones = pd.Series(["07911 123456", "780-555-0134", "780-555-0134", "+44 7911 123456"])
    countries = pd.Series(["United Kingdom", "CA", None, "CA"])

    values, errors = normalize("ph", phones, default_country="CA", country=countries)

    assert values.tolist() == ["447911123456", "17805550134", "17805550134", "447911123456"]
    assert errors.isna().all()


def test_north_american_011_prefix_means_an_international_number():
    assert normalized("ph", "011 44 20 7946 0958", default_country="US") == "442079460958"


def test_phone_without_any_country_is_accepted_only_with_its_calling_code():
    assert normalized("ph", "+44 20 7946 0958") == "442079460958"
    assert normalized("ph", "17805550134") == "17805550134"
    assert error("ph", "780-555-0134").startswith("ph: 10 digits and no country")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1997-02-16", "19970216"),
        ("02/16/1997", "19970216"),
        ("19970216", "19970216"),
        ("1997-02-16T00:00:00", "19970216"),
        ("2000-02-29", "20000229"),
    ],
)
def test_dates_of_birth(raw, expected):
    assert normalized("db", raw) == expected


@pytest.mark.parametrize(
    "raw", ["1997-02-30", "2001-02-29", "13/01/1990", "31/12/1990", "1850-01-01", "16.02.1997"]
)
def test_impossible_or_ambiguous_dates_are_rejected(raw):
    assert error("db", raw).startswith("db: ")


def test_external_id_is_trimmed_and_keeps_its_case():
    assert normalized("external_id", "  cus_NffrFeUfNV2Hib ") == "cus_NffrFeUfNV2Hib"
    assert hash_one("external_id", "cus_AbC") != hash_one("external_id", "cus_abc")


def test_state_and_zip_follow_the_rows_country():
    values, errors = normalize(
        "st", pd.Series(["AB", "AB", "Texas", "Bayern"]), country=pd.Series(["CA", "US", "US", "DE"])
    )
    assert values.tolist()[0] == "ab" and values.tolist()[2] == "tx" and values.tolist()[3] == "bayern"
    assert pd.isna(values.iloc[1]) and errors.iloc[1].startswith("st: not a US state")

    values, errors = normalize(
        "zp", pd.Series(["T5J 0N3", "T5J 0N3", "94035", "T5J"]), country=pd.Series(["CA", "US", None, "CA"])
    )
    assert values.tolist()[0] == "t5j0n3" and values.tolist()[2] == "94035"
    assert errors.iloc[1].startswith("zp: not a US ZIP code")
    assert errors.iloc[3].startswith("zp: not a Canadian postal code")


# --- errors --------------------------------------------------------------------------------------

INVALID = [
    ("em", "john.smith.gmail.com", 'em: not an email address (no "@")'),
    ("em", "john smith@gmail.com", "em: not an email address (contains a space or an invisible character)"),
    ("em", "john@gmail", 'em: not an email address (no "." in the domain)'),
    ("em", "john@@gmail.com", 'em: not an email address (more than one "@")'),
    ("ph", "555-0134", "ph: 7 digits, expected a full phone number"),
    ("ph", "12", "ph: 2 digits, expected a full phone number"),
    ("ph", "+1 780 555 013", "ph: 10 digits with country code +1, expected 11"),
    ("fn", "1234", "fn: no letters left"),
    ("ln", "--", "ln: no letters left"),
    ("zp", "T5J#0N3", "zp: has characters other than letters, digits, spaces and dashes"),
    ("st", "Narnia Province", "st: not a 2-letter code"),
    ("country", "Narnia", 'country: "Narnia" is not an ISO 3166-1 alpha-2 code'),
    ("db", "1997-02-30", "db: not a real calendar date"),
]


@pytest.mark.parametrize(("key", "raw", "expected_start"), INVALID)
def test_invalid_values_give_an_error_that_names_the_field(key, raw, expected_start):
    assert error(key, raw, default_country="CA").startswith(expected_start)


@pytest.mark.parametrize(("key", "raw"), [(key, raw) for key, raw, _ in INVALID if key != "country"])
def test_errors_never_contain_the_clear_value(key, raw):
    message = error(key, raw, default_country="CA")
    digits = "".join(c for c in raw if c.isdigit())
    assert raw not in message
    assert raw.lower() not in message
    if len(digits) >= 3:
        assert digits not in message


def test_errors_are_reported_per_row_and_valid_rows_still_hash():
    frame = pd.DataFrame(
        {
            "email": ["ok@example.com", "not-an-email", None],
            "phone": ["780-555-0134", "12", "780 555 0199"],
            "first_name": ["Zoë", "O'Brien", "!!!"],
            "country": ["CA", "Canada", "Narnia"],
        }
    )

    out = hash_frame(frame, default_country="CA")

    assert out.loc[0, "errors"] == ""
    assert out.loc[1, "errors"] == (
        'em: not an email address (no "@"); '
        "ph: 2 digits, expected a full phone number (10 digits for CA, or with the +1 country code)"
    )
    assert out.loc[2, "errors"].split("; ")[0].startswith("country: ")
    assert out.loc[2, "errors"].split("; ")[1].startswith("fn: no letters left")
    assert out.loc[1, "fn"] == sha256("obrien")
    assert pd.isna(out.loc[1, "em"]) and pd.isna(out.loc[1, "ph"])
    # Row 2's country is unknown, so its phone takes the default country's calling code.
    assert out.loc[2, "ph"] == sha256("17805550199")


# --- hashes, empties, passthrough -----------------------------------------------------------------


def test_already_hashed_values_pass_through_lowercased_not_hashed_again():
    digest = sha256("john_smith@gmail.com")
    for key in ("em", "ph", "fn", "zp", "external_id"):
        assert hash_one(key, digest.upper()) == digest
        assert hash_one(key, f"  {digest} ") == digest
    assert is_hashed(digest.upper()) and not is_hashed("john_smith@gmail.com") and not is_hashed(None)
    assert HASHED_KEY_PATTERN.match(digest) and not HASHED_KEY_PATTERN.match(digest.upper())


def test_empty_values_give_empty_results_without_errors():
    values, errors = normalize("em", pd.Series([None, "", "   ", float("nan")], dtype=object))
    assert values.isna().all() and errors.isna().all()
    assert hash_one("ph", None) is None
    assert hash_one("ph", "  ") is None


def test_hash_normalized_is_sha256_of_utf8_and_keeps_na():
    hashed = hash_normalized(pd.Series(["valéry", None, "16505551212"], dtype="str"))
    assert hashed.iloc[0] == sha256("valéry")
    assert pd.isna(hashed.iloc[1])
    assert hashed.iloc[2] == sha256("16505551212")


def test_hash_one_raises_with_a_message_free_of_the_value():
    with pytest.raises(ValueError, match=r'^em: not an email address \(no "@"\)$'):
        hash_one("em", "jane.doe.example.com")


def test_unknown_key_and_bad_default_country_are_refused():
    with pytest.raises(ValueError, match="unknown customer-data key"):
        normalize("email", pd.Series(["a@b.co"]))
    with pytest.raises(ValueError, match="default_country"):
        normalize("ph", pd.Series(["7805550134"]), default_country="Canada")


def test_repeated_values_are_normalized_once_and_land_on_the_right_rows():
    cities = pd.Series(["Edmonton", None, "St. Albert", "EDMONTON", "", "St. Albert", "123"] * 3, dtype="str")

    values, errors = normalize("ct", cities)

    expected = ["edmonton", None, "stalbert", "edmonton", None, "stalbert", None] * 3
    assert [None if pd.isna(v) else v for v in values] == expected
    assert errors.notna().tolist() == [False, False, False, False, False, False, True] * 3


def test_normalization_version_is_pinned():
    assert NORMALIZATION_VERSION == 1


# --- frames and CSV --------------------------------------------------------------------------------

CSV = """\
Email,Phone,First Name,last_name,city,state,zip,country,date_of_birth,external_id,notes
 Zoe.Tremblay@Shaw.ca ,780-555-0134,Zoë,O'Brien,Edmonton,Alberta,T5J 0N3,Canada,1990-04-01,cus_A1,vip
bad-email,12,Hélène,Smith-Jones,St. Albert,AB,T8N 1A1,CA,02/30/1991,,
,,,Na,,,,,,,
"""


def test_hash_frame_output_columns_and_values():
    out = hash_frame(pd.read_csv(io.StringIO(CSV), dtype=str, keep_default_na=False))

    assert list(out.columns) == [*KEYS, "errors"]
    first = out.iloc[0]
    assert first["em"] == sha256("zoe.tremblay@shaw.ca")
    assert first["ph"] == sha256("17805550134")
    assert first["fn"] == sha256("zoë")
    assert first["ln"] == sha256("obrien")
    assert first["ct"] == sha256("edmonton")
    assert first["st"] == sha256("ab")
    assert first["zp"] == sha256("t5j0n3")
    assert first["country"] == sha256("ca")
    assert first["db"] == sha256("19900401")
    assert first["external_id"] == sha256("cus_A1")
    assert out.iloc[2]["ln"] == sha256("na")
    assert out.iloc[2][list(KEYS)].drop("ln").isna().all()


def test_hash_frame_refuses_a_frame_with_no_known_column_but_takes_one_with_no_columns():
    with pytest.raises(ValueError, match="no customer-data column"):
        hash_frame(pd.DataFrame({"e-mail address": ["a@b.co"]}))
    out = hash_frame(pd.DataFrame([{}, {}]))
    assert len(out) == 2 and out[list(KEYS)].isna().all(axis=None) and (out["errors"] == "").all()


def test_hash_frame_fills_absent_columns_with_na():
    out = hash_frame(pd.DataFrame({"email": ["a@b.co"]}))
    assert list(out.columns) == [*KEYS, "errors"]
    assert out[[k for k in KEYS if k != "em"]].isna().all(axis=None)


def test_hash_csv_round_trip():
    dst = io.StringIO()

    counts = hash_csv(io.StringIO(CSV), dst, default_country="CA")

    assert counts == {"rows": 3, "rows_with_errors": 1, "ignored_columns": ["notes"]}
    written = pd.read_csv(io.StringIO(dst.getvalue()), dtype=str, keep_default_na=False)
    expected = hash_frame(pd.read_csv(io.StringIO(CSV), dtype=str, keep_default_na=False)).fillna("")
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)
    assert written.loc[1, "errors"] == (
        'em: not an email address (no "@"); '
        "ph: 2 digits, expected a full phone number (10 digits for CA, or with the +1 country code); "
        "db: not a real calendar date"
    )


def test_hash_csv_in_chunks_writes_the_same_as_in_one():
    rows = [f"user{i}@example.com,780-555-{i:04d},Zoë,O'Brien{i % 3},T5J 0N3,Canada" for i in range(23)]
    rows[7] = "broken,12,,,,"
    text = "email,phone,first_name,last_name,zip,country\n" + "\n".join(rows) + "\n"

    outputs = []
    for chunk_rows in (1, 5, 23, 1000):
        dst = io.StringIO()
        counts = hash_csv(io.StringIO(text), dst, default_country="CA", chunk_rows=chunk_rows)
        assert counts["rows"] == 23 and counts["rows_with_errors"] == 1
        outputs.append(dst.getvalue())

    assert all(output == outputs[0] for output in outputs)
    assert outputs[0].count("\n") == 24


def test_hash_csv_of_a_header_only_file_writes_a_header():
    dst = io.StringIO()
    assert hash_csv(io.StringIO("email,phone\n"), dst, default_country="CA")["rows"] == 0
    assert dst.getvalue() == ",".join([*KEYS, "errors"]) + "\n"


def test_fast_sha256_matches_hashlib():
    for text in ["", "a", "john_smith@gmail.com", "valéry", "ü" * 200]:
        assert identity._sha256(text.encode()).hexdigest() == sha256(text)


# --- the facebook-business SDK's normalizer --------------------------------------------------------


def sdk_hash(key: str, value: str) -> str:
    from facebook_business.adobjects.serverside.normalize import Normalize

    return Normalize.normalize_field(key, value)


@pytest.mark.parametrize(
    ("key", "raw"),
    [
        ("em", " John_Smith@Gmail.com "),
        ("ct", "New York"),
        ("ct", "Edmonton"),
        ("zp", "94035-1234"),
        ("zp", "T5J 0N3"),
        ("country", "US"),
        ("country", " ca "),
        ("ph", "+1 (650) 555-1212"),
        ("ph", "16505551212"),
        ("fn", "Mary"),
        ("ln", "Valéry"),
        ("st", "AB"),
    ],
)
def test_adloop_agrees_with_the_sdk_where_metas_rules_agree(key, raw):
    assert hash_one(key, raw, default_country="US") == sdk_hash(key, raw)


def test_where_adloop_deliberately_differs_from_the_sdk():
    # Phone without a country code: the SDK hashes the national number; Meta requires the code.
    assert sdk_hash("ph", "(650) 555-1212") == sha256("6505551212")
    assert hash_one("ph", "(650) 555-1212", default_country="US") == sha256("16505551212")

    # Names with punctuation: the SDK keeps it; Meta says no punctuation.
    assert sdk_hash("ln", "O'Brien") == sha256("o'brien")
    assert hash_one("ln", "O'Brien") == sha256("obrien")
    assert sdk_hash("ln", "Smith-Jones") == sha256("smith-jones")
    assert hash_one("ln", "Smith-Jones") == sha256("smithjones")

    # State names: the SDK hashes the name; Meta wants the 2-letter code.
    assert sdk_hash("st", "Alberta") == sha256("alberta")
    assert hash_one("st", "Alberta") == sha256("ab")

    # Country names: the SDK refuses them; adloop maps them to the code.
    with pytest.raises(TypeError):
        sdk_hash("country", "Canada")
    assert hash_one("country", "Canada") == sha256("ca")
