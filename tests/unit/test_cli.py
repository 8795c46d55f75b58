"""The `adloop` command as people run it: a real process, real files."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

ADLOOP = str(Path(sys.executable).with_name("adloop"))


def test_hash_writes_meta_ready_columns_and_names_bad_values(tmp_path):
    src = tmp_path / "customers.csv"
    src.write_text(
        "email,phone,first_name,last_name,zip\n"
        " Zoe.OBrien@Example.com ,780-555-0134,Zoë,O'Brien,T5J 0N3\n"
        "not-an-email,12,,,\n",
        encoding="utf-8",
    )
    out = subprocess.run([ADLOOP, "hash", "--default-country", "CA", str(src)], capture_output=True,
                         text=True, check=True)

    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert list(rows[0])[:10] == ["em", "ph", "fn", "ln", "ct", "st", "zp", "country", "db", "external_id"]
    import hashlib

    def sha(s):
        return hashlib.sha256(s.encode()).hexdigest()

    assert rows[0]["em"] == sha("zoe.obrien@example.com")
    assert rows[0]["ph"] == sha("17805550134")
    assert rows[0]["fn"] == sha("zoë") and rows[0]["ln"] == sha("obrien")
    assert rows[0]["zp"] == sha("t5j0n3")
    assert rows[0]["errors"] == ""
    assert rows[1]["em"] == "" and rows[1]["ph"] == ""
    assert "em:" in rows[1]["errors"] and "ph:" in rows[1]["errors"]
    assert "not-an-email" not in out.stdout + out.stderr  # errors describe, never echo
    assert "1 with values that could not be normalized" in out.stderr


def test_sandbox_serves_a_stripe_fixture_to_the_real_sdk(tmp_path):
    import stripe

    fixture = tmp_path / "export.json"
    sessions = [
        {"id": f"cs_live_{i}", "object": "checkout.session", "created": 1_764_000_000 + i, "livemode": True,
         "mode": "payment", "status": "complete", "payment_status": "paid", "amount_total": 1000 + i,
         "currency": "cad"}
        for i in range(150)
    ]
    fixture.write_text(json.dumps({"object": "list", "data": sessions}))
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "adloop.sandbox", "--state", str(tmp_path / "s.db"), "--stripe-port", "0",
         "--meta-port", "0", "--stripe-fixture", str(fixture), "--ready-file", str(ready)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        urls = json.loads(proc.stdout.readline())
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": urls["stripe_url"]})
        got = [s.id for s in client.v1.checkout.sessions.list({"limit": 100}).auto_paging_iter()]
        assert sorted(got) == sorted(s["id"] for s in sessions)
    finally:
        proc.terminate()
        proc.wait(10)
