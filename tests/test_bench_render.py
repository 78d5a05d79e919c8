"""`romlab bench native`'s table and plot, from figures written by hand (no NIC needed).

The expected cells are worked out here: packets/s = packets / seconds, Mbit/s = packets/s x size x 8
/ 10^6, each path against the kernel's figure for the same frame size, the C path against the
Python path for the same size and batch."""
from __future__ import annotations

import json

from PIL import Image

from romlab.bench.native import Figure

FIGURES = [
    Figure("kernel", 64, 0, 3_000_000, 3.0),             # 1,000,000 pkt/s, 512.0 Mbit/s
    Figure("c", 64, 32, 2_400_000, 3.0, 2_400_000),      # 800,000 pkt/s, 409.6 Mbit/s
    Figure("python", 64, 32, 300_000, 3.0, 300_000),     # 100,000 pkt/s, 51.2 Mbit/s
    Figure("c", 1514, 1, 90_000, 2.0, 90_000),           # 45,000 pkt/s, 545.04 Mbit/s, no kernel figure
]


def test_native_table_reads_each_path_against_the_kernel_and_c_against_python():
    from romlab.bench.render import native_table

    lines = native_table(FIGURES).splitlines()
    assert lines[0].split() == ["path", "size", "batch", "pkt/s", "Mbit/s", "vs", "kernel", "vs", "python"]
    assert set(lines[1]) == {"-"}
    assert [ln.split() for ln in lines[2:]] == [
        ["kernel", "64", "-", "1000000", "512.0", "1.00x", "-"],
        ["c", "64", "32", "800000", "409.6", "0.80x", "8.0x"],
        ["python", "64", "32", "100000", "51.2", "0.10x", "-"],
        ["c", "1514", "1", "45000", "545.0", "-", "-"],
    ]
    # Columns line up: every cell of a right-aligned column ends where its heading ends.
    end = lines[0].index("pkt/s") + len("pkt/s")
    assert all(ln[:end].endswith(cell) for ln, cell in zip(lines[2:], ("1000000", "800000", "100000", "45000")))


def test_native_plot_carries_every_figure_in_its_metadata(tmp_path):
    from romlab.bench.render import PNG_KEY_NATIVE, native_plot

    png = tmp_path / "n.png"
    native_plot(FIGURES, str(png))
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] >= 600
        meta = json.loads(im.text[PNG_KEY_NATIVE])
    assert meta["schema"] == "romlab.bench-native/3"
    assert [(f["path"], f["frame_bytes"], f["batch"], f["packets"], f["pps"], f["mbit_s"])
            for f in meta["figures"]] == [
        ("kernel", 64, 0, 3_000_000, 1_000_000.0, 512.0), ("c", 64, 32, 2_400_000, 800_000.0, 409.6),
        ("python", 64, 32, 300_000, 100_000.0, 51.2), ("c", 1514, 1, 90_000, 45_000.0, 545.04)]


def test_native_cli_document_keeps_the_conventions(monkeypatch, capsys):
    """`bench native --json` after the measuring (bench.native.run replaced by FIGURES): the
    device is the input, with its domain, and the document passes the conventions' checker."""
    from json_conventions import check

    from romlab.bench import native
    from romlab.cli import main

    seen = []
    monkeypatch.setattr(native, "run", lambda bdf, sizes, batches, seconds: seen.append(bdf) or list(FIGURES))
    assert main(["bench", "native", "--pci", "03:00.0", "--json", "--quiet"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert check(doc, "romlab.bench-native/3") == []  # docs/conventions.md
    assert doc["input"] == "pci:0000:03:00.0" and seen == ["03:00.0"]
    # packets / duration = packets/s: 3,000,000 frames in 3.0 s.
    assert (doc["figures"][0]["packets"], doc["figures"][0]["duration_s"], doc["figures"][0]["pps"]) == (
        3_000_000, 3.0, 1_000_000.0)
    # A BDF that cannot be one is refused before anything is measured.
    assert main(["bench", "native", "--pci", "3:0:0:0", "--json"]) == 2
    assert seen == ["03:00.0"] and "is not a PCI address" in capsys.readouterr().err


# --- the pictures, measured in their pixels ---------------------------------------------------

def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def _near(px, colour, tol=6) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(px[:3], colour))


def measure_bar(im, box, colour) -> tuple[int, int]:
    """The first and last image row of a bar, found in the pixels: start in the middle of the bar's
    box a quarter of the way across (clear of a whisker and its caps in the centre), and walk up and
    down while the pixels have the bar's colour. Edge rows blended by antialiasing do not count, so
    a measured height may be short of the drawn one by up to a pixel at each end."""
    x0, y0, x1, y1 = box
    x = x0 + (x1 - x0) // 4
    if y1 - y0 < 3:
        # A bar under three pixels tall is all antialiased edge, with no row of its own colour:
        # it must still be drawn there, as pixels pulled from the white ground toward its colour.
        rows = [im.getpixel((x, y))[:3] for y in range(max(0, int(y0) - 1), min(im.height, int(y1) + 1))]
        assert any(sum(abs(a - b) for a, b in zip(p, colour)) < sum(abs(255 - b) for b in colour) for p in rows), \
            (box, rows)
        return int(y0), int(y1) - 1
    mid = (y0 + y1) // 2
    assert _near(im.getpixel((x, mid)), colour), (box, im.getpixel((x, mid)))
    top = mid
    while top > 0 and _near(im.getpixel((x, top - 1)), colour):
        top -= 1
    bottom = mid
    while bottom < im.height - 1 and _near(im.getpixel((x, bottom + 1)), colour):
        bottom += 1
    return top, bottom


def dark_rows_in_centre(im, top, bottom, x) -> int:
    """Rows strictly inside a bar with a near-black pixel within a pixel of column x: a min-max
    whisker drawn over the bar's centre."""
    return sum(1 for y in range(top + 3, bottom - 2)
               if min(sum(im.getpixel((c, y))[:3]) for c in (x - 1, x, x + 1)) < 200)


def assert_heights_proportional(im, bars, value_key):
    """Every bar stands on one baseline and its height in pixels is its value times one scale,
    within two pixels: what a linear axis from zero draws, and what a log axis or one starting
    above zero does not."""
    measured = []
    for b in bars:
        top, bottom = measure_bar(im, b["box_px"], _rgb(b["colour"]))
        # The box the metadata gives is where the bar really is.
        assert abs(top - b["box_px"][1]) <= 1 and abs(bottom + 1 - b["box_px"][3]) <= 1, (b, top, bottom)
        measured.append((b[value_key], top, bottom))
    baseline = max(bottom for _, _, bottom in measured)
    assert all(baseline - bottom <= 1 for _, _, bottom in measured)
    vmax, tmax, bmax = max(measured)
    scale = (bmax - tmax + 1) / vmax
    for value, top, bottom in measured:
        assert abs((bottom - top + 1) - value * scale) <= 2, (value, bottom - top + 1, value * scale)
    return measured


def _firmware_doc(runs: int, nics: dict[str, tuple]) -> dict:
    """A bench document as `bench firmware` writes it: per NIC (native median, min, max, UNDI
    median, min, max); with one run min = max = median."""
    out = []
    for name, (nm, nlo, nhi, um, ulo, uhi) in nics.items():
        def stats(med, lo, hi):
            return {"runs": runs, "median_mbit_s": med, "min_mbit_s": lo, "max_mbit_s": hi,
                    "spread_pct": (hi - lo) / med * 100}
        out.append({"nic": name, "rom": f"/usr/lib/ipxe/qemu/pxe-{name}.rom", "rom_is_ipxe": True,
                    "id": None,
                    "native": {"path": "native", "chip": name, "ok": True, "error": None, "stats": stats(nm, nlo, nhi)},
                    "undi": {"path": "undi", "chip": "undionly", "ok": True, "error": None,
                             "stats": stats(um, ulo, uhi)},
                    "ratio_native_over_undi": nm / um})
    return {"schema": "romlab.bench-firmware/3", "inputs": [f"qemu:{n}" for n in nics],
            "started": "2026-01-01T00:00:00+00:00", "size_bytes": 2 << 20,
            "runs": runs, "firmware": "seabios", "accel": "tcg", "nics": out}


# UNDI at a tenth of native on e1000 (the case a log axis hid), closer on the others.
SEVERAL = _firmware_doc(3, {"e1000": (400.0, 360.0, 420.0, 40.0, 28.0, 44.0),
                            "rtl8139": (250.0, 220.0, 300.0, 125.0, 100.0, 130.0),
                            "virtio-net": (320.0, 290.0, 330.0, 16.0, 4.0, 17.0)})
ONE = _firmware_doc(1, {"e1000": (400.0, 400.0, 400.0, 40.0, 40.0, 40.0),
                        "e1000e": (100.0, 100.0, 100.0, 80.0, 80.0, 80.0)})


def _firmware_png(doc, tmp_path, name):
    from romlab.bench.render import PNG_KEY, firmware_plot

    png = tmp_path / name
    firmware_plot(doc, str(png))
    im = Image.open(png)
    meta = json.loads(im.text[PNG_KEY])
    return im.convert("RGB"), meta


def test_firmware_png_bars_are_as_tall_as_their_values_with_whiskers_for_several_runs(tmp_path):
    im, meta = _firmware_png(SEVERAL, tmp_path, "several.png")
    assert meta["axis"] == {"scale": "linear", "from": 0, "unit": "Mbit/s"}
    assert sorted((b["nic"], b["path"], b["median_mbit_s"]) for b in meta["bars"]) == [
        ("e1000", "native", 400.0), ("e1000", "undi", 40.0), ("rtl8139", "native", 250.0),
        ("rtl8139", "undi", 125.0), ("virtio-net", "native", 320.0), ("virtio-net", "undi", 16.0)]
    measured = assert_heights_proportional(im, meta["bars"], "median_mbit_s")
    # Native and UNDI read against each other: the e1000's UNDI bar is a tenth of its native one.
    h = {(b["nic"], b["path"]): bottom - top + 1 for b, (_, top, bottom) in zip(meta["bars"], measured)}
    assert abs(h["e1000", "undi"] * 10 - h["e1000", "native"]) <= 20
    assert h["e1000", "undi"] >= 20  # UNDI is plainly there, not a sliver at the bottom
    # Several runs: each bar carries its min-max whisker, drawn over its centre.
    for b, (_, top, bottom) in zip(meta["bars"], measured):
        x = (b["box_px"][0] + b["box_px"][2]) // 2
        assert dark_rows_in_centre(im, top, bottom, x) >= 2, b


def test_firmware_png_with_one_run_has_no_whiskers(tmp_path):
    im, meta = _firmware_png(ONE, tmp_path, "one.png")
    measured = assert_heights_proportional(im, meta["bars"], "median_mbit_s")
    for b, (_, top, bottom) in zip(meta["bars"], measured):
        x = (b["box_px"][0] + b["box_px"][2]) // 2
        assert dark_rows_in_centre(im, top, bottom, x) == 0, b
    assert [f["native"]["runs"] for f in meta["figures"]] == [1, 1]


def test_firmware_png_with_a_bar_one_pixel_tall_is_measured_too(tmp_path):
    """UNDI at 1/400 of native (a loaded machine's short run) draws a bar of about one pixel, all
    antialiased edge: it is found in the pixels where the metadata puts it, not missed."""
    im, meta = _firmware_png(_firmware_doc(1, {"e1000": (400.0, 400.0, 400.0, 1.0, 1.0, 1.0)}), tmp_path, "thin.png")
    thin = next(b for b in meta["bars"] if b["path"] == "undi")
    assert thin["box_px"][3] - thin["box_px"][1] < 3
    assert_heights_proportional(im, meta["bars"], "median_mbit_s")


def test_firmware_table_says_1_run_not_a_spread_of_0_percent():
    from romlab.bench.render import firmware_html, firmware_table

    caption, _head, _rule, *rows = firmware_table(ONE).splitlines()
    assert caption == "2 MiB over HTTP, 1 run per path, seabios, TCG; one timed run per path, so no spread"
    assert [r.split() for r in rows] == [
        ["e1000", "400.0", "1", "run", "40.0", "1", "run", "10.0x", "e1000", "/", "undionly"],
        ["e1000e", "100.0", "1", "run", "80.0", "1", "run", "1.2x", "e1000e", "/", "undionly"]]
    assert "0%" not in firmware_table(ONE)
    assert "<td>400.0</td><td>1 run</td>" in firmware_html(ONE, None)

    caption, _head, _rule, *rows = firmware_table(SEVERAL).splitlines()
    assert caption.startswith("2 MiB over HTTP, 3 runs per path, seabios, TCG; median of runs")
    # spread = (max - min) / median: e1000 native (420 - 360) / 400 = 15%, UNDI (44 - 28) / 40 = 40%.
    assert rows[0].split() == ["e1000", "400.0", "15%", "40.0", "40%", "10.0x", "e1000", "/", "undionly"]


def test_native_png_bars_are_as_tall_as_their_values(tmp_path):
    from romlab.bench.render import PNG_KEY_NATIVE, native_plot

    png = tmp_path / "native.png"
    native_plot(FIGURES, str(png))
    im = Image.open(png)
    meta = json.loads(im.text[PNG_KEY_NATIVE])
    im = im.convert("RGB")
    # No bar stands for the missing kernel figure at 1514 bytes.
    assert sorted((b["path"], b["frame_bytes"], b["batch"], b["pps"]) for b in meta["bars"]) == [
        ("c", 64, 32, 800_000.0), ("c", 1514, 1, 45_000.0), ("kernel", 64, 32, 1_000_000.0),
        ("python", 64, 32, 100_000.0)]
    assert_heights_proportional(im, meta["bars"], "pps")
