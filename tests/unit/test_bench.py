"""The benchmark harness's own pieces (not timings: performance is measured by `python -m bench`, never in tests)."""
from __future__ import annotations

import json
import struct
import zlib

import pytest

from bench import chart
from bench.__main__ import line, markdown_table, update_scaling


def _feed(name: str, total: float, floor: float, rss: float, rows: int = 5000) -> dict:
    return {"feed": name, "transport": "s3", "rows": rows, "bytes": rows * 100, "prepare_s": total / 2,
            "gate_s": total / 4, "deliver_s": total / 4, "total_s": total, "rows_per_s": int(rows / total),
            "peak_rss_mb": rss, "floor": {"total_s": floor}, "ratio_to_floor": round(total / floor, 2)}


def _run(size: int, scale: float) -> dict:
    feeds = [_feed("adgrid_customer_match", 1.0 * scale, 0.6 * scale, 450), _feed("payflow_settlement", 0.3, 0.2, 400, 40)]
    return {"customers": size, "feeds": feeds, "totals": {"feeds_s": 1.3 * scale, "floor_s": 0.8 * scale,
            "ratio_to_floor": 1.6, "rows": 5040, "bytes": 504000, "max_peak_rss_mb": 450},
            "machine_after": {"loadavg": [1.0, 1.0, 1.0]}, "erasure": {"batch_s": 12.5}, "dag_parsing": {"folder_s": 0.4}}


def test_table_lines_carry_the_floor_and_the_ratio():
    run = _run(10_000, 1.0)
    table = markdown_table(run)
    assert "| adgrid_customer_match | s3 | 5,000 |" in table and "| 1.7 |" in table
    assert "**all feeds**" in table
    assert "1.7" in line(run["feeds"][0])


def test_png_fallback_writes_a_valid_png(tmp_path):
    scaling = {"runs": [{"customers": s, "feeds": {f["feed"]: {"total_s": f["total_s"], "floor_s": f["floor"]["total_s"],
                                                                "peak_rss_mb": f["peak_rss_mb"], "rows": f["rows"]}
                                                    for f in _run(s, k)["feeds"]}}
                        for s, k in ((10_000, 1), (100_000, 10), (1_000_000, 100))]}
    out = chart._draw_numpy(scaling, tmp_path / "c.png")
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    width, height = struct.unpack(">II", data[16:24])
    assert kind == b"IHDR" and width > 500 and height > 300
    idat = data.index(b"IDAT")
    size = struct.unpack(">I", data[idat - 4:idat])[0]
    raw = zlib.decompress(data[idat + 4:idat + 4 + size])
    assert len(raw) == height * (1 + width * 3)


def test_scaling_summary_collects_every_run(tmp_path, monkeypatch):
    import bench.__main__ as main

    monkeypatch.setattr(main, "RESULTS", tmp_path)
    for size, k in ((10_000, 1), (100_000, 10)):
        (tmp_path / f"run_{size}.json").write_text(json.dumps(_run(size, k)))
    scaling = update_scaling()
    assert scaling["sizes"] == [10_000, 100_000]
    assert scaling["runs"][1]["feeds"]["adgrid_customer_match"]["ratio_to_floor"] == pytest.approx(1.67, abs=0.01)
    assert json.loads((tmp_path / "scaling.json").read_text())["runs"][0]["erasure_batch_s"] == 12.5
    assert (tmp_path / "scaling.png").exists()


def test_duckdb_parameters_are_renamed_and_booleans_stored_as_sqlite_does():
    from vendorprivacy.source import duck_sql

    sql, params = duck_sql("SELECT 1 FROM t WHERE a = :true AND b >= :window_start AND c = '::text'",
                           {"true": True, "window_start": 5, "unused": 1})
    assert sql == "SELECT 1 FROM t WHERE a = $p_true AND b >= $p_window_start AND c = '::text'"
    assert params == {"p_true": 1, "p_window_start": 5}
