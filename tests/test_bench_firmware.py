"""`romlab bench firmware`: the short CI variant (one NIC, runs sized to 0.3 s) end to end, the dnsmasq path,
a failing NIC, and the parts underneath (server-side timing and byte counts, the chainload
planner, the console reader) against real HTTP clients and hand-written console bytes.
No speed is asserted: only facts from the server, the console and the files written."""
from __future__ import annotations

import itertools
import json
import os
import re
import struct
import time
import urllib.request

import pytest
from conftest import IPXE_QEMU, corpus, run_romlab
from json_conventions import check
from qemu_console import leftovers

SIZE_2M = 2 * 1024 * 1024


def png_text(path) -> dict[str, str]:
    """The PNG's text chunks (tEXt, zTXt, iTXt), as Pillow reads them."""
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG"
        return dict(im.text)


def assert_clean():
    left = leftovers()
    assert not any(left.values()), left


# -- QEMU runs ---------------------------------------------------------------------------------

@pytest.mark.qemu
def test_short_bench_on_e1000_reports_every_byte_and_writes_json_png_html(tmp_path):
    out_path, png, page = tmp_path / "b.json", tmp_path / "b.png", tmp_path / "b.html"
    r = run_romlab("bench", "firmware", "--nic", "e1000", "--size", "2M", "--min-seconds", "0.3", "--runs", "2",
                   "-o", out_path, "--plot", png, "--html", page, timeout=900)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    doc = json.loads(out_path.read_text())
    assert doc["schema"] == "romlab.bench-firmware/4" and doc["size_bytes"] == SIZE_2M and doc["runs"] == 2
    assert doc["min_run_s"] == 0.3 and doc["host_cpu_count"] == os.cpu_count()
    assert doc["started"].endswith("+00:00")
    assert check(doc, "romlab.bench-firmware/4") == []  # docs/conventions.md
    assert doc["inputs"] == ["qemu:e1000"]
    (nic,) = doc["nics"]
    assert nic["nic"] == "e1000" and nic["id"] == "8086:100e"
    assert nic["rom"] == str(IPXE_QEMU / "pxe-e1000.rom") and nic["rom_is_ipxe"]
    # The driver each boot reported to the server: iPXE's native e1000 driver, then undionly.
    assert nic["native"]["chip"] == "82540em"
    assert nic["undi"]["chip"] == "undionly"
    assert nic["rom_retargeted"] is None
    for path in ("native", "undi"):
        runs = nic[path]["runs"]
        assert [x["run"] for x in runs] == [1, 2]
        # Sizing: transfers from 2 MiB (--size, under 4 MiB); the first taken twice when it already
        # lasted the 0.3 s minimum, then each larger than the one before; all but the last (and a
        # repeated first) shorter than the minimum, the last at least that long (or at the 1 GiB cap).
        sizing = nic[path]["sizing"]
        assert len(sizing) >= 2 and sizing[0]["size_bytes"] == SIZE_2M
        rest = sizing[1:] if sizing[0]["duration_s"] >= 0.3 else sizing
        assert rest[0]["size_bytes"] == SIZE_2M
        assert all(a["size_bytes"] < b["size_bytes"] for a, b in itertools.pairwise(rest))
        assert all(s["duration_s"] < 0.3 for s in rest[:-1])
        assert rest[-1]["duration_s"] >= 0.3 or rest[-1]["size_bytes"] == 1 << 30
        # The runs' payload: what lasts twice 0.3 s at the fastest sizing pace, in whole MiB, at
        # least 2 MiB.
        pace = max(s["size_bytes"] / s["duration_s"] for s in sizing)
        want = max(SIZE_2M, -(-int(pace * 0.3 * 2) // (1 << 20)) * (1 << 20))
        assert nic[path]["run_size_bytes"] == want
        assert nic[path]["warmup"]["size_bytes"] == want and nic[path]["warmup"]["duration_s"] > 0
        assert len(nic[path]["host_load"]) == 2
        for x in runs:
            assert x["complete"] and x["error"] is None
            assert x["bytes_sent"] == x["size_bytes"] == want
            assert 0 < x["qemu_cpu_s"]
            assert x["mbit_per_cpu_s"] == pytest.approx(want * 8 / x["qemu_cpu_s"] / 1e6)
            assert x["duration_s"] > 0 and x["mbit_s"] == pytest.approx(want * 8 / x["duration_s"] / 1e6)
            assert x["socket_s"] is not None  # the server finished writing
        per_cpu = [x["mbit_per_cpu_s"] for x in runs]
        assert nic[path]["cpu_stats"]["runs"] == 2 and nic[path]["cpu_stats"]["max_mbit_per_cpu_s"] == max(per_cpu)
        speeds = [x["mbit_s"] for x in runs]
        st = nic[path]["stats"]
        assert st["runs"] == 2 and st["min_mbit_s"] == min(speeds) and st["max_mbit_s"] == max(speeds)
        assert st["spread_pct"] == pytest.approx((max(speeds) - min(speeds)) / st["median_mbit_s"] * 100)
    assert nic["ratio_native_over_undi"] == pytest.approx(nic["native"]["stats"]["median_mbit_s"]
                                                          / nic["undi"]["stats"]["median_mbit_s"])
    # What each boot's iPXE said when it asked for its script: the UNDI boot first came up on the
    # ROM's native driver, was chained to undionly.kpxe, and asked again from undionly.
    assert nic["native"]["driver_reports"] == ["82540em"]
    assert nic["undi"]["driver_reports"] == ["82540em", "undionly"]
    # Table on stdout: the one the JSON carries, each figure the JSON's value formatted once
    # (Mbit/s and native/UNDI to one decimal, spread to a whole percent; docs/firmware-bench.md).
    out = r.stdout.decode()
    assert doc["table"] in out
    row = [ln for ln in doc["table"].splitlines() if ln.startswith("e1000 ")][0]
    nat, und = nic["native"]["stats"], nic["undi"]["stats"]
    assert row.split() == ["e1000", f"{nat['median_mbit_s']:.1f}", f"{nat['spread_pct']:.0f}%",
                           f"{und['median_mbit_s']:.1f}",
                           f"{und['spread_pct']:.0f}%", f"{nic['ratio_native_over_undi']:.1f}x", "82540em", "/",
                           "undionly"]
    # The PNG carries the figures: same as the JSON.
    meta = json.loads(png_text(png)["romlab.bench-firmware"])
    assert meta["size_bytes"] == SIZE_2M and meta["runs"] == 2
    (fig,) = meta["figures"]
    assert fig["nic"] == "e1000" and fig["native_chip"] == "82540em" and fig["undi_chip"] == "undionly"
    for path in ("native", "undi"):
        for k in ("median_mbit_s", "min_mbit_s", "max_mbit_s", "spread_pct"):
            assert fig[path][k] == round(nic[path]["stats"][k], 2)
    assert fig["ratio_native_over_undi"] == round(nic["ratio_native_over_undi"], 2)
    # ...and draws them: each bar as tall as its median on the linear axis, measured in the pixels.
    from PIL import Image
    from test_bench_render import assert_heights_proportional

    with Image.open(png) as im:
        assert_heights_proportional(im.convert("RGB"), meta["bars"], "median_mbit_s")
    # Every file written is named on screen.
    assert [ln for ln in out.splitlines() if ln.startswith("wrote ")] == [f"wrote {p}" for p in (out_path, png, page)]
    html = page.read_text()
    assert "<table>" in html and "data:image/png;base64," in html
    assert (f"<td>{nat['median_mbit_s']:.1f}</td><td>{nat['spread_pct']:.0f}%</td><td>{und['median_mbit_s']:.1f}</td>"
            f"<td>{und['spread_pct']:.0f}%</td><td>{nic['ratio_native_over_undi']:.1f}x</td>") in html
    assert_clean()


@pytest.mark.qemu
@pytest.mark.root
def test_bench_through_dnsmasq_in_a_namespace(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    out = tmp_path / "d.json"
    r = run_romlab("bench", "firmware", "--nic", "e1000", "--size", "1M", "--min-seconds", "0", "--runs", "1",
                   "--dhcp", "dnsmasq", "-o", out, timeout=900)
    assert r.returncode == 0, r.stderr.decode()[-3000:]
    doc = json.loads(out.read_text())
    assert check(doc, "romlab.bench-firmware/4") == []
    (nic,) = doc["nics"]
    assert nic["native"]["chip"] == "82540em" and nic["undi"]["chip"] == "undionly"
    # --min-seconds 0: no sizing, every run is --size.
    assert all(nic[p]["sizing"] == [] and nic[p]["warmup"] is None and nic[p]["run_size_bytes"] == 1 << 20
               for p in ("native", "undi"))
    assert all(x["complete"] and x["bytes_sent"] == 1 << 20 for p in ("native", "undi") for x in nic[p]["runs"])
    undi_log = nic["undi"]["dhcp_log"]
    # dnsmasq saw the iPXE user class and handed out romlab's script URL on the namespace's address...
    assert any(ln.endswith("user class: iPXE") for ln in undi_log)
    assert any(re.search(r"bootfile-name\s+http://192\.168\.240\.1:\d+/boot\.ipxe$", ln) for ln in undi_log)
    # ...and served undionly.kpxe over its own TFTP when the script chained it.
    assert any(re.search(r"^dnsmasq-tftp\[\d+\]: sent \S+/undionly\.kpxe to 192\.168\.240\.\d+$", ln)
               for ln in undi_log), undi_log[-20:]
    assert_clean()


@pytest.mark.qemu
def test_a_nic_whose_rom_is_skipped_fails_with_the_reason_and_exit_1(tmp_path):
    rom = corpus(IPXE_QEMU / "pxe-e1000.rom")
    out = tmp_path / "f.json"
    r = run_romlab("bench", "firmware", "--nic", "e1000e", "--rom", rom, "--size", "1M", "--min-seconds", "0",
                   "--runs", "1", "-o", out, timeout=600)
    assert r.returncode == 1
    doc = json.loads(out.read_text())
    assert check(doc, "romlab.bench-firmware/4") == []  # a failed path keeps the conventions too
    (nic,) = doc["nics"]
    assert nic["id"] == "8086:10d3"
    for p in ("native", "undi"):
        assert not nic[p]["ok"]
        assert "PCIR says 8086:100e but the device is 8086:10d3" in nic[p]["error"]
    row = [ln for ln in r.stdout.decode().splitlines() if ln.startswith("e1000e ")][0]
    assert row.split()[:4] == ["e1000e", "failed", "failed", "-"]
    assert_clean()


@pytest.mark.qemu
def test_igb_row_runs_the_retargeted_e1000e_rom_and_names_the_link_that_never_came_up(tmp_path):
    """QEMU's igb (82576) with Debian's e1000e ROM retargeted to 10c9 by the bench: iPXE's intel
    driver takes the part on both boots, the link stays down (docs/firmware-bench.md, 'igb'), and the
    row says so; the ROM the bench made is gone afterwards."""
    out = tmp_path / "igb.json"
    r = run_romlab("bench", "firmware", "--nic", "igb", "--runs", "1", "-o", out, timeout=900)
    assert r.returncode == 1, r.stderr.decode()[-3000:]
    doc = json.loads(out.read_text())
    assert check(doc, "romlab.bench-firmware/4") == []
    (nic,) = doc["nics"]
    assert nic["id"] == "8086:10c9"
    assert nic["rom"] == str(IPXE_QEMU / "pxe-e1000e.rom") and nic["rom_retargeted"] == {"id": "8086:10c9"}
    for p in ("native", "undi"):
        assert not nic[p]["ok"] and nic[p]["runs"][0]["error"] == "never requested"
        assert nic[p]["error"] == ("iPXE's 82576 driver took the NIC but its link never came up: Waiting for "
                                   "link-up on net0................. Down (http://ipxe.org/38086101)")
    assert_clean()


def test_bench_refuses_unusable_input(tmp_path):
    r = run_romlab("bench", "firmware", "--nic", "e1000", "--size", "lots")
    assert r.returncode == 2
    assert r.stderr.decode().strip() == ("romlab bench: error: 'lots' is not a size; write it like 16M, 512K "
                                         "or 2097152")
    # tulip is a NIC QEMU emulates but ipxe-qemu ships no ROM for; a model QEMU lacks is named as such.
    r = run_romlab("bench", "firmware", "--nic", "tulip", "--size", "1M")
    assert r.returncode == 2
    assert "no Debian ROM /usr/lib/ipxe/qemu/pxe-tulip.rom" in r.stderr.decode()
    r = run_romlab("bench", "firmware", "--nic", "pcnet-no-such", "--size", "1M")
    assert r.returncode == 2
    assert "unknown NIC model 'pcnet-no-such'" in r.stderr.decode()
    r = run_romlab("bench")
    assert r.returncode == 2 and "romlab bench firmware --help" in r.stderr.decode()
    for bad in ("-1", "nan", "61"):
        r = run_romlab("bench", "firmware", "--nic", "e1000", "--min-seconds", bad)
        assert r.returncode == 2 and "--min-seconds must be in [0, 60]" in r.stderr.decode()
    r = run_romlab("bench", "firmware", "--nic", "e1000", "--size", "2G")
    assert r.returncode == 2 and "more than the largest run the guest can hold (1 GiB)" in r.stderr.decode()


# -- the parts, without QEMU -------------------------------------------------------------------

# A document as `--json` writes it, cut to what the table, the HTML and the plot read. The native
# median 391.548 is the figure of the failing run in issue 10: one decimal of it is 391.5, while
# rounding it to two decimals first (391.55) and then to one gives 391.6.
RENDER_DOC = {
    "schema": "romlab.bench-firmware/4", "inputs": ["qemu:e1000"], "started": "2025-01-01T00:00:00+00:00",
    "size_bytes": SIZE_2M, "runs": 2,
    "firmware": "seabios", "accel": "tcg",
    "nics": [{"nic": "e1000", "rom": "/usr/lib/ipxe/qemu/pxe-e1000.rom", "rom_is_ipxe": True,
              "id": "8086:100e",
              "native": {"path": "native", "chip": "82540em", "ok": True, "error": None,
                         "stats": {"runs": 2, "median_mbit_s": 391.548, "min_mbit_s": 385.0, "max_mbit_s": 398.0,
                                   "spread_pct": 3.3202}},
              "undi": {"path": "undi", "chip": "undionly", "ok": True, "error": None,
                       "stats": {"runs": 2, "median_mbit_s": 20.0311, "min_mbit_s": 20.0, "max_mbit_s": 20.1,
                                 "spread_pct": 0.4992}},
              "ratio_native_over_undi": 19.547}],
}


def test_table_and_html_print_each_json_figure_rounded_once():
    from romlab.bench import render

    row = [ln for ln in render.firmware_table(RENDER_DOC).splitlines() if ln.startswith("e1000 ")][0]
    assert row.split() == ["e1000", "391.5", "3%", "20.0", "0%", "19.5x", "82540em", "/", "undionly"]
    # (two runs 0.1 Mbit/s apart: a real spread that rounds to 0%, unlike a single run, which says so)
    html = render.firmware_html(RENDER_DOC, None)
    assert "<td>391.5</td><td>3%</td><td>20.0</td><td>0%</td><td>19.5x</td>" in html


def test_plot_metadata_carries_the_json_figures_to_two_decimals(tmp_path):
    from romlab.bench import render

    png = tmp_path / "p.png"
    render.firmware_plot(RENDER_DOC, str(png))
    meta = json.loads(png_text(png)["romlab.bench-firmware"])
    assert meta["schema"] == "romlab.bench-firmware/4" and meta["size_bytes"] == SIZE_2M and meta["runs"] == 2
    assert meta["figures"] == [
        {"nic": "e1000", "native_chip": "82540em", "undi_chip": "undionly", "ratio_native_over_undi": 19.55,
         "native": {"runs": 2, "median_mbit_s": 391.55, "min_mbit_s": 385.0, "max_mbit_s": 398.0, "spread_pct": 3.32},
         "undi": {"runs": 2, "median_mbit_s": 20.03, "min_mbit_s": 20.0, "max_mbit_s": 20.1, "spread_pct": 0.5}}]
    assert sorted((b["nic"], b["path"], b["median_mbit_s"]) for b in meta["bars"]) == [
        ("e1000", "native", 391.55), ("e1000", "undi", 20.03)]


def test_cli_prints_json_with_json_writes_it_with_o_and_names_every_file(tmp_path, monkeypatch, capsys):
    """`bench firmware` after the boots (run_bench replaced by RENDER_DOC): --json puts the
    document on stdout and nothing else, -o writes it to a file, and each file written is named."""
    import copy

    from romlab.bench import firmware as bf
    from romlab.cli import main
    from romlab.lab import qemu

    monkeypatch.setattr(bf, "run_bench", lambda **kw: copy.deepcopy(RENDER_DOC))
    monkeypatch.setattr(qemu, "terminate_on_sigterm", lambda: None)  # pytest keeps its own SIGTERM
    out, png, page = tmp_path / "b.json", tmp_path / "b.png", tmp_path / "b.html"
    assert main(["bench", "firmware", "--nic", "e1000", "--quiet", "--json"]) == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)
    assert doc["schema"] == "romlab.bench-firmware/4" and doc["table"].splitlines()[-1].startswith("e1000 ")
    assert cap.err == ""
    assert main(["bench", "firmware", "--nic", "e1000", "-o", str(out), "--plot", str(png), "--html", str(page)]) == 0
    cap = capsys.readouterr()
    assert json.loads(out.read_text()) == doc
    lines = cap.out.splitlines()
    assert lines[-3:] == [f"wrote {out}", f"wrote {png}", f"wrote {page}"]
    assert "\n".join(lines[:-3]) == doc["table"]
    assert png.read_bytes().startswith(b"\x89PNG") and "data:image/png;base64," in page.read_text()
    # With --json on stdout, the files are named on stderr, so stdout stays one JSON document.
    assert main(["bench", "firmware", "--nic", "e1000", "--json", "-o", str(out), "--overwrite"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out) == doc and f"wrote {out}" in cap.err.splitlines()
    # An output that exists is refused before any boot, and left as it was.
    before = out.read_bytes()
    assert main(["bench", "firmware", "--nic", "e1000", "-o", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before


def test_server_times_from_payload_request_to_confirmation_and_counts_bytes():
    from romlab.lab.http import LabHttp, payload_bytes

    payload = payload_bytes(300_000)
    with LabHttp(payload=payload) as lab:
        base = lab.url()
        t0 = time.monotonic()
        with urllib.request.urlopen(f"{base}/payload/x1") as resp:
            assert resp.headers["Content-Length"] == "300000"
            got = resp.read()
        time.sleep(0.2)  # the client "thinks" before confirming; the server's clock keeps running
        urllib.request.urlopen(f"{base}/done/x1").read()
        t1 = time.monotonic()
        tr = lab.transfers["x1"]
        assert got == payload and tr.sent == 300_000 and tr.complete
        assert 0.2 <= tr.seconds <= t1 - t0
        # A transfer nobody confirms is not complete, even with every byte sent.
        urllib.request.urlopen(f"{base}/payload/x2").read()
        # The client can hold the last byte before the server's thread has counted it.
        deadline = time.monotonic() + 10
        while lab.transfers["x2"].sent_all_at is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lab.transfers["x2"].sent == 300_000 and not lab.transfers["x2"].complete
        assert [h.path for h in lab.hits] == ["/payload/x1", "/done/x1", "/payload/x2"]


def test_server_notices_a_client_that_hangs_up_early():
    import socket

    from romlab.lab.http import LabHttp, payload_bytes

    with LabHttp(payload=payload_bytes(64 << 20)) as lab:
        s = socket.create_connection(lab.address)
        s.sendall(b"GET /payload/cut HTTP/1.1\r\nHost: x\r\n\r\n")
        s.recv(100_000)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()  # RST
        deadline = time.monotonic() + 10
        while lab.transfers["cut"].error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        tr = lab.transfers["cut"]
        assert tr.error and tr.error.startswith("connection lost after ") and tr.sent < 64 << 20
        assert not tr.complete


def test_planner_chains_undionly_once_then_benches_and_refuses_a_loop():
    from romlab.bench.firmware import PhasePlan
    from romlab.lab.http import ScriptRequest

    def req(chip):
        return ScriptRequest("next", "10.0.2.15", "http://10.0.2.2:8080", {"mac": "52:54:00:12:34:56", "chip": chip})

    plan = PhasePlan("undi", "e1000_undi", 2, SIZE_2M)
    first = plan(ScriptRequest("boot.ipxe", "10.0.2.15", "http://10.0.2.2:8080", {}))
    assert first.startswith("#!ipxe\nchain http://10.0.2.2:8080/next?mac=${netX/mac}&chip=${netX/chip}")
    assert plan(req("82540em")).splitlines()[-1] == "chain http://10.0.2.2:8080/file/undionly.kpxe"
    script = plan(req("undionly"))
    assert plan.chip == "undionly" and plan.error is None
    lines = script.splitlines()
    assert "imgfetch --name romlab_p http://10.0.2.2:8080/payload/e1000_undi-1 || goto romlab_fail" in lines
    # The confirmation comes only after the payload line succeeded, on the next line.
    i = lines.index("imgfetch --name romlab_p http://10.0.2.2:8080/payload/e1000_undi-2 || goto romlab_fail")
    assert lines[i + 1] == "imgfetch --name romlab_d http://10.0.2.2:8080/done/e1000_undi-2 || goto romlab_fail"
    loop = PhasePlan("undi", "t", 1, 1)
    loop(req("82540em"))
    assert "exit 1" in loop(req("82540em")) and "did not take" in loop.error
    native = PhasePlan("native", "t", 1, 1)
    native(req("undionly"))
    assert native.error == "the native run came up on undionly, not on a native driver"
    tftp = PhasePlan("undi", "t", 1, 1, undionly_url="tftp://192.168.240.1/undionly.kpxe")
    assert tftp(req("rtl8139")).splitlines()[-1] == "chain tftp://192.168.240.1/undionly.kpxe"


def test_console_undoes_escapes_backspaces_and_column_80_wraps():
    from romlab.lab.console import Console

    c = Console()
    text = ("\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)\r\n\r\n"
            "iPXE (http://ipxe.org) 00:03.0 CA00 PCI2.10 PnP PMM+0EFCF1B0+0EF0F1B0 CA00\r\n"
            "Press Ctrl-B to configure iPXE (PCI 00:03.0)...\r" + " " * 79 + "\r\n"
            "Booting from ROM...\r\n"
            "Press Ctrl-B for the iPXE command line..." + "\b \b" * 41 + "net0: 52:54:00:12:34:56 using "
            "rtl8139 on 0000:00:03.0 (open)\r\n"
            "\x1b[0;1miPXE 1.0.0+git\x1b[0m -- Open Source Network Boot Firmware -- \x1b[0;36mhttp\r\n://ipxe.org\r\n")
    # Split anywhere: feeding byte by byte must give the same screen.
    for ch in text.encode("latin-1"):
        c.feed(bytes([ch]))
    c.feed(b"echo " + b"x" * 75 + b"\r\nyz\r\n")  # 80 columns, then its continuation
    assert [t for _, t in c.lines] == [
        "SeaBIOS (version 1.16.2-debian-1.16.2-1)",
        "iPXE (http://ipxe.org) 00:03.0 CA00 PCI2.10 PnP PMM+0EFCF1B0+0EF0F1B0 CA00",
        # (the Ctrl-B prompt was overwritten with spaces, as on screen)
        "Booting from ROM...",
        "net0: 52:54:00:12:34:56 using rtl8139 on 0000:00:03.0 (open)",
        "iPXE 1.0.0+git -- Open Source Network Boot Firmware -- http",
        "://ipxe.org",
        "echo " + "x" * 75 + "yz",
    ]
    assert [(e.kind, e.facts) for e in c.events][:4] == [
        ("firmware", {"version": "1.16.2-debian-1.16.2-1"}),
        ("rom_banner", {"maker": "iPXE", "bdf": "00:03.0", "segment": "CA00"}),
        ("boot_entry", {"what": "ROM"}),
        ("netdev", {"ifname": "net0", "mac": "52:54:00:12:34:56", "chip": "rtl8139", "bus": "0000:00:03.0"}),
    ]


def test_console_names_a_banner_it_does_not_know():
    from romlab.lab.console import Console

    c = Console()
    c.feed(b"SeaBIOS (version 1.16.2)\r\nPress ESC for boot menu.\r\n"
           b"Intel(R) Boot Agent GE v1.5.88\r\nCopyright (C) 1997-2018, Intel Corporation\r\n"
           b"Booting from ROM...\r\nCLIENT MAC ADDR: 52 54 00 12 34 56  GUID: 00000000\r\n"
           b"PXE-E51: No DHCP or proxyDHCP offers were received.\r\n")
    ev = [(e.kind, e.line) for e in c.events]
    assert ("rom_banner", "Intel(R) Boot Agent GE v1.5.88") in ev
    assert ("pxe_error", "PXE-E51: No DHCP or proxyDHCP offers were received.") in ev
    assert c.first("pxe_error").facts["code"] == "PXE-E51"


def test_sizes_parse_in_binary_units():
    from romlab.lab.http import parse_size

    assert parse_size("16M") == 16 * 1024 * 1024
    assert parse_size("2MiB") == 2 * 1024 * 1024
    assert parse_size("512k") == 512 * 1024
    assert parse_size("1000") == 1000
