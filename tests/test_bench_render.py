"""`romlab bench native`'s table and plot, from figures written by hand (no NIC needed).

The expected cells are worked out here: a run's packets/s = the NIC's count / seconds, a figure's
the median of its runs, spread = (max - min) / median, each path against the kernel's figure for the
same NIC, frame size and batch (the kernel's pktgen burst), the C path against the Python path."""
from __future__ import annotations

import json

import pytest
from PIL import Image

from romlab.bench.native import Figure, NicResult, Run


def _fig(path, size, batch, *pps, seconds=2.0):
    """A figure whose runs sent pps x seconds frames each, every one counted by the NIC."""
    return Figure(path, size, batch, [Run(round(p * seconds), round(p * seconds), seconds) for p in pps])


RESULTS = [
    NicResult("e1000", "0000:00:03.0", "8086:100e", "e1000", "eth0", figures=[
        _fig("kernel", 64, 32, 900_000, 1_000_000, 1_100_000),   # median 1,000,000, spread 20%
        _fig("c", 64, 32, 780_000, 800_000, 820_000),            # median 800,000, spread 5%
        _fig("python", 64, 32, 100_000, 100_000, 100_000),       # median 100,000, spread 0%
        _fig("c", 1514, 1, 45_000, 44_000, 46_000),              # median 45,000; no kernel or Python figure
    ]),
    NicResult("igb PF", "0000:00:05.0", "8086:10c9", "igb", "eth2", figures=[
        _fig("kernel", 64, 32, 500_000, 400_000, 600_000),       # median 500,000, spread 40%
    ], romlab_error="0000:00:05.0 (8086:10c9) is not a NIC this driver supports"),
]


def test_figures_are_medians_of_what_the_nic_counted():
    f = Figure("c", 64, 32, [Run(10, 9, 1.0), Run(10, 10, 2.0), Run(10, 12, 1.0)])   # 9, 5, 12 pkt/s
    assert (f.pps, f.min_pps, f.max_pps) == (9.0, 5.0, 12.0)
    assert f.spread_pct == (12 - 5) / 9 * 100
    assert f.mbps == 9 * 64 * 8 / 1e6
    assert Figure("c", 64, 32, [Run(1, 1, 1.0)]).spread_pct is None   # one run has no spread


def test_native_table_reads_each_path_against_the_kernel_at_the_same_burst():
    from romlab.bench.render import native_table

    lines = native_table(RESULTS).splitlines()
    assert lines[0].startswith("pkt/s counted by the NIC (GPTC; ethtool tx_packets under the kernel's driver), "
                               "median of 3 runs of about 2 s;")
    assert lines[1].split() == ["NIC", "size", "batch", "kernel", "pkt/s", "spread", "C", "pkt/s", "spread",
                                "Python", "pkt/s", "spread", "C/kernel", "C/Python"]
    assert set(lines[2]) <= {"-", " "}
    assert [ln.split() for ln in lines[3:6]] == [
        ["e1000", "64", "32", "1000000", "20%", "800000", "5%", "100000", "0%", "0.80x", "8.0x"],
        ["e1000", "1514", "1", "-", "-", "45000", "4%", "-", "-", "-", "-"],
        ["igb", "PF", "64", "32", "500000", "40%", "-", "-", "-", "-", "-", "-"],
    ]
    assert lines[6] == ("igb PF (0000:00:05.0): romlab's driver has no figures: 0000:00:05.0 (8086:10c9) is not a "
                        "NIC this driver supports")
    # Columns line up: every cell of a right-aligned column ends where its heading ends.
    end = lines[1].index("kernel pkt/s") + len("kernel pkt/s")
    assert all(ln[:end].endswith(cell) for ln, cell in zip(lines[3:6], ("1000000", "-", "500000")))


def test_native_plot_carries_every_figure_in_its_metadata(tmp_path):
    from romlab.bench.render import PNG_KEY_NATIVE, native_plot

    png = tmp_path / "n.png"
    native_plot(RESULTS, str(png))
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] >= 600
        meta = json.loads(im.text[PNG_KEY_NATIVE])
    assert meta["schema"] == "romlab.bench-native/6"
    figs = [(n["nic"], f["path"], f["frame_bytes"], f["batch"], f["median_pps"], f["min_pps"], f["max_pps"])
            for n in meta["nics"] for f in n["figures"]]
    assert figs == [("e1000", "kernel", 64, 32, 1_000_000.0, 900_000.0, 1_100_000.0),
                    ("e1000", "c", 64, 32, 800_000.0, 780_000.0, 820_000.0),
                    ("e1000", "python", 64, 32, 100_000.0, 100_000.0, 100_000.0),
                    ("e1000", "c", 1514, 1, 45_000.0, 44_000.0, 46_000.0),
                    ("igb PF", "kernel", 64, 32, 500_000.0, 400_000.0, 600_000.0)]
    assert meta["nics"][1]["romlab_error"].endswith("is not a NIC this driver supports")
    run = meta["nics"][0]["figures"][0]["runs"][0]
    assert run == {"queued": 1_800_000, "hw_packets": 1_800_000, "duration_s": 2.0, "pps": 900_000.0}


def test_native_cli_document_keeps_the_conventions(monkeypatch, capsys):
    """`bench native --json` after the measuring (bench.native.run replaced by RESULTS): the
    devices are the inputs, with their domain, and the document passes the conventions' checker."""
    from json_conventions import check

    from romlab.bench import native
    from romlab.cli import main

    seen = []
    monkeypatch.setattr(native, "run", lambda bdfs, sizes, batches, seconds, runs, vf, progress, kernel_dma:
                        seen.append((bdfs, sizes, batches, seconds, runs, vf, kernel_dma)) or list(RESULTS))
    assert main(["bench", "native", "--pci", "00:03.0", "--pci", "00:05.0", "--vf", "--json", "--quiet"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert check(doc, "romlab.bench-native/6") == []  # docs/conventions.md
    assert doc["inputs"] == ["pci:0000:00:03.0", "pci:0000:00:05.0"]
    assert seen == [(["00:03.0", "00:05.0"], [64, 1514], [1, 32, 256], 2.0, 3, True, None)]
    assert [n["input"] for n in doc["nics"]] == ["pci:0000:00:03.0", "pci:0000:00:05.0"]
    assert doc["runs"] == 3 and doc["kernel_counter"] == "ethtool tx_packets" and doc["count_mismatches"] == []
    # the median of 900,000, 1,000,000 and 1,100,000 pkt/s; spread (1.1M - 0.9M) / 1M = 20%
    k = doc["nics"][0]["figures"][0]
    assert (k["median_pps"], k["spread_pct"]) == (1_000_000.0, 20.0)
    # Refused before anything is measured: a BDF that cannot be one, fewer than 3 runs, a NIC twice.
    assert main(["bench", "native", "--pci", "3:0:0:0", "--json"]) == 2
    assert "is not a PCI address" in capsys.readouterr().err
    assert main(["bench", "native", "--pci", "00:03.0", "--runs", "2"]) == 2
    assert "--runs 3..100" in capsys.readouterr().err
    assert main(["bench", "native", "--pci", "00:03.0", "--pci", "0000:00:03.0"]) == 2
    assert "each --pci NIC once" in capsys.readouterr().err
    assert len(seen) == 1


def test_count_mismatches_are_listed():
    from romlab.bench.native import check_counts

    r = NicResult("e1000", "0000:00:03.0", "8086:100e", "e1000", "eth0",
                  figures=[Figure("c", 64, 32, [Run(100, 100, 1.0), Run(100, 98, 1.0)]),
                           Figure("kernel", 64, 32, [Run(100, 90, 1.0)])])   # the kernel's queue is not the NIC's
    assert check_counts([r]) == ["e1000 c 64 B batch 32 run 2: 100 queued, 98 counted by the NIC"]


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
    native_plot(RESULTS, str(png))
    im = Image.open(png)
    meta = json.loads(im.text[PNG_KEY_NATIVE])
    im = im.convert("RGB")
    # No bar stands for a missing figure (the kernel at 1514 bytes, romlab on the igb PF).
    assert sorted((b["nic"], b["path"], b["frame_bytes"], b["batch"], b["median_pps"]) for b in meta["bars"]) == [
        ("e1000", "c", 64, 32, 800_000.0), ("e1000", "c", 1514, 1, 45_000.0), ("e1000", "kernel", 64, 32, 1_000_000.0),
        ("e1000", "python", 64, 32, 100_000.0), ("igb PF", "kernel", 64, 32, 500_000.0)]
    assert_heights_proportional(im, meta["bars"], "median_pps")


def test_igbvf_row_is_marked_as_not_like_for_like(tmp_path):
    """igbvf writes its tail for every frame (Linux's igbvf_tx_queue_adv ends in a writel of the
    tail, and its xmit path never reads netdev_xmit_more), so the VF's kernel figure is not at the
    batch's doorbell count: the row, the caption, the plot and the JSON say so; igb's do not."""
    from romlab.bench.render import PNG_KEY_NATIVE, native_plot, native_table

    pf = NicResult("igb PF", "0000:00:05.0", "8086:10c9", "igb", "eth2",
                   figures=[_fig("kernel", 64, 32, 500_000, 500_000, 500_000), _fig("c", 64, 32, 250_000, 250_000, 250_000)])
    vf = NicResult("igb VF", "0000:00:05.1", "8086:10ca", "igbvf", "eth3", pf="0000:00:05.0",
                   figures=[_fig("kernel", 64, 32, 100_000, 100_000, 100_000), _fig("c", 64, 32, 300_000, 300_000, 300_000)])
    assert (pf.kernel_defers_tail, vf.kernel_defers_tail) == (True, False)
    assert pf.as_dict()["kernel_tail_note"] is None
    note = "igbvf: one tail write per frame (no xmit_more), so C/kernel on this row is not like for like"
    assert vf.as_dict()["kernel_defers_tail"] is False and vf.as_dict()["kernel_tail_note"] == note
    lines = native_table([pf, vf]).splitlines()
    assert lines[1] == "* " + note
    rows = [ln.split() for ln in lines[4:6]]
    assert rows[0][:2] == ["igb", "PF"] and rows[0][-2] == "0.50x"      # 250,000 / 500,000
    assert rows[1][:2] == ["igb", "VF*"] and rows[1][-2] == "3.00x"     # 300,000 / 100,000
    # a driver not checked is neither like for like nor not: null, and no mark
    other = NicResult("virtio", "0000:00:06.0", "1af4:1000", "virtio_net", "eth4")
    assert other.as_dict()["kernel_defers_tail"] is None and other.kernel_tail_note is None
    png = tmp_path / "vf.png"
    native_plot([pf, vf], str(png))
    with Image.open(png) as im:
        meta = json.loads(im.text[PNG_KEY_NATIVE])
    assert [(n["nic"], n["kernel_defers_tail"]) for n in meta["nics"]] == [("igb PF", True), ("igb VF", False)]


def test_the_kernel_drivers_iommu_domain_is_in_the_caption_and_the_json():
    """The kernel driver maps every frame through its group's domain, romlab its buffers once: the
    caption says which domain the kernel's runs had, and that it was set for them where it was."""
    from romlab.bench.render import native_table

    def nic(label, bdf, found, used):
        return NicResult(label, bdf, "8086:100e", "e1000", "eth0", iommu_domain=found, kernel_dma=used,
                         figures=[_fig("kernel", 64, 32, 100_000, 100_000, 100_000)])

    a, b = nic("e1000", "0000:00:03.0", "DMA", "identity"), nic("e1000e", "0000:00:04.0", "DMA", "identity")
    assert native_table([a, b]).splitlines()[1] == \
        "the kernel driver's IOMMU domain: identity, set for its runs (the group's own: DMA)"
    assert (a.as_dict()["iommu_domain_found"], a.as_dict()["kernel_iommu_domain"]) == ("DMA", "identity")
    c = nic("igb PF", "0000:00:05.0", "DMA-FQ", "DMA-FQ")
    assert native_table([a, c]).splitlines()[1] == ("the kernel driver's IOMMU domain: e1000: identity, set for its "
                                                    "runs (the group's own: DMA); igb PF: DMA-FQ")
    # no IOMMU anywhere: nothing is translated for anyone, and nothing is said
    assert "IOMMU" not in native_table([nic("e1000", "0000:00:03.0", None, None)])


def test_kernel_dma_reaches_the_bench_and_a_bad_one_is_refused(monkeypatch, capsys):
    from romlab.bench import native
    from romlab.cli import main

    seen = []
    monkeypatch.setattr(native, "run", lambda bdfs, sizes, batches, seconds, runs, vf, progress, kernel_dma:
                        seen.append(kernel_dma) or list(RESULTS))
    assert main(["bench", "native", "--pci", "00:03.0", "--kernel-dma", "identity", "--json", "--quiet"]) == 0
    assert seen == ["identity"]
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        main(["bench", "native", "--pci", "00:03.0", "--kernel-dma", "strict"])
    assert exc.value.code == 2 and seen == ["identity"]
    assert "'strict' is not one of as-found, identity" in capsys.readouterr().err
