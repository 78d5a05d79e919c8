"""`romlab boot` under QEMU (TCG): what it reports for Debian's ROMs, and how it ends when a boot
does not reach its goal. Facts come from the console and from QEMU; no speed is asserted.

Expected values were worked out without romlab: QEMU's e1000 is 8086:100e and its e1000e 8086:10d3
(QEMU's hw/net sources, `lspci -n` in a guest); iPXE names the 8086:100e driver "82540em" (the
chip in pci.ids); slirp's DHCP hands out 10.0.2.15 (QEMU's documented default); the SeaBIOS
banner's version is read from the bios-256k.bin QEMU loads (Debian 12's says "1.16.2-debian-1.16.2-1").
Each check for leftovers covers only the romlab processes the test started (tests/qemu_console.py)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import IPXE_QEMU, corpus, run_romlab
from qemu_console import (
    leftovers,
    romlab_netns,
    romlab_processes,
    romlab_tempdirs,
    seabios_version,
    track,
)

pytestmark = pytest.mark.qemu

UNDIONLY = "/usr/lib/ipxe/undionly.kpxe"


def hanging_rom() -> bytes:
    """A 512-byte legacy ROM for 8086:100e whose init is `jmp $` (EB FE), checksum fixed by hand."""
    b = bytearray(512)
    b[0:3] = b"\x55\xaa\x01"
    b[3:5] = b"\xeb\xfe"
    b[0x18:0x1A] = b"\x1c\x00"  # PCIR at 0x1C
    b[0x1C:0x20] = b"PCIR"
    b[0x20:0x24] = b"\x86\x80\x0e\x10"  # vendor 8086, device 100e
    b[0x26:0x28] = b"\x18\x00"  # PCIR length 24
    b[0x29:0x2C] = b"\x00\x00\x02"  # class 02 00 00 (Ethernet)
    b[0x2C:0x2E] = b"\x01\x00"  # image length: 1 block
    b[0x30] = 0x00  # code type x86
    b[0x31] = 0x80  # last image
    b[511] = (-sum(b)) & 0xFF
    return bytes(b)


def boot_json(*args, timeout=240):
    r = run_romlab("boot", *args, "--json", timeout=timeout)
    doc = json.loads(r.stdout) if r.stdout.strip() else None
    return r, doc


def kinds(doc, kind):
    return [e for e in doc["events"] if e["kind"] == kind]


def assert_clean():
    left = leftovers()
    assert not any(left.values()), left


def test_ipxe_rom_on_e1000_runs_and_configures_dhcp():
    rom = corpus(IPXE_QEMU / "pxe-e1000.rom")
    r, doc = boot_json("--nic", "e1000", "--rom", rom, "--timeout", "120")
    assert r.returncode == 0, r.stderr
    assert doc["reached"] and doc["state"] == "reached" and doc["goal"] == "rom"
    assert doc["schema"] == "romlab.boot/2" and doc["input"] == str(rom) and doc["id"] == "8086:100e"
    assert kinds(doc, "firmware")[0]["version"] == seabios_version()
    banner = kinds(doc, "rom_banner")[0]
    assert banner["maker"] == "iPXE" and banner["line"].startswith("iPXE (http://ipxe.org) 00:")
    # the console says "00:0N.0 C000": the JSON gives the BDF its domain and the segment as a number
    assert banner["bdf"] == "0000:" + banner["line"].split()[2] and banner["segment"] == 0xC000
    assert kinds(doc, "boot_entry")[0]["what"] == "ROM"
    assert kinds(doc, "netdev")[0]["chip"] == "82540em"
    assert kinds(doc, "netdev")[0]["mac"] == "52:54:00:12:34:56"
    assert kinds(doc, "address")[0]["ip"] == "10.0.2.15"
    assert doc["rom_images"] == [{"index": 0, "offset": 0, "code_type": "00", "id": "8086:100e", "ipxe": True}]
    assert_clean()


def test_rom_for_another_device_is_named_skipped_with_both_ids():
    rom = corpus(IPXE_QEMU / "pxe-e1000.rom")
    r = run_romlab("boot", "--nic", "e1000e", "--rom", rom, "--timeout", "60", timeout=120)
    assert r.returncode == 1
    err = r.stderr.decode()
    last = err.strip().splitlines()[-1]
    assert last.startswith("romlab boot: error: skipped:"), err
    assert "8086:100e" in last and "8086:10d3" in last
    assert "last console lines:" in err and "SeaBIOS (version" in err
    assert_clean()


def test_hanging_rom_ends_with_one_line_the_last_console_lines_and_no_qemu(tmp_path):
    rom = tmp_path / "hang.rom"
    rom.write_bytes(hanging_rom())
    t = time.monotonic()
    r = run_romlab("boot", "--nic", "e1000", "--rom", rom, "--timeout", "6", timeout=90)
    assert time.monotonic() - t < 60
    assert r.returncode == 1
    err = r.stderr.decode().strip().splitlines()
    assert err[-1].startswith("romlab boot: error: hung: no result after 6 s"), err
    assert "before any ROM output" in err[-1]
    assert f"  | SeaBIOS (version {seabios_version()})" in err
    assert_clean()


def test_killed_romlab_takes_its_qemu_along(tmp_path):
    import shutil

    before = set(romlab_tempdirs())
    rom = tmp_path / "hang.rom"
    rom.write_bytes(hanging_rom())
    p = subprocess.Popen([sys.executable, "-m", "romlab", "boot", "--nic", "e1000", "--rom", str(rom),
                          "--timeout", "100"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    track(p.pid)
    deadline = time.monotonic() + 30
    while not leftovers()["processes"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert leftovers()["processes"], "QEMU never started"
    p.kill()  # SIGKILL: no clean-up code in romlab runs
    p.communicate()
    deadline = time.monotonic() + 10
    while leftovers()["processes"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not leftovers()["processes"]
    for d in set(romlab_tempdirs()) - before:  # SIGKILL left romlab no chance to remove them
        shutil.rmtree(d, ignore_errors=True)


def test_ovmf_runs_the_efi_image_of_efi_e1000():
    rom = corpus(IPXE_QEMU / "efi-e1000.rom")
    r, doc = boot_json("--nic", "e1000", "--rom", rom, "--firmware", "ovmf", "--timeout", "200", timeout=300)
    assert r.returncode == 0, r.stderr
    assert [i["code_type"] for i in doc["rom_images"]] == ["00", "03"]
    # The EFI build says so in its feature list ("EFI"), the legacy one does not.
    assert kinds(doc, "ipxe_version")
    assert kinds(doc, "netdev")[0]["chip"] == "82540em"
    assert kinds(doc, "address")[0]["ip"] == "10.0.2.15"
    assert not kinds(doc, "firmware")  # no SeaBIOS here
    assert_clean()


def test_nbp_over_tftp_runs_and_a_missing_nbp_is_refused(tmp_path):
    rom = corpus(IPXE_QEMU / "pxe-virtio.rom")
    r, doc = boot_json("--nic", "virtio-net", "--rom", rom, "--nbp", UNDIONLY, "--expect", "UNDI device is PCI",
                       "--timeout", "120")
    assert r.returncode == 0, r.stderr
    assert doc["goal"] == "nbp" and doc["id"] == "1af4:1041"
    fetch = kinds(doc, "fetch")[0]
    assert fetch["uri"] == "tftp://10.0.2.2/undionly.kpxe" and fetch["result"] == "ok"
    assert kinds(doc, "image")[0]["size"] == os.path.getsize(UNDIONLY)
    assert kinds(doc, "undi")[0]["bus"] == "PCI"
    missing = tmp_path / "absent.kpxe"
    r = run_romlab("boot", "--nic", "virtio-net", "--rom", rom, "--nbp", missing)
    assert r.returncode == 2
    assert r.stderr.decode().strip().splitlines() == [f"romlab boot: error: {missing}: no such NBP file "
                                                      "(the file to hand out over TFTP)"]
    assert_clean()


def test_script_goal_success_and_failure(tmp_path):
    rom = corpus(IPXE_QEMU / "pxe-rtl8139.rom")
    ok = tmp_path / "ok.ipxe"
    ok.write_text("#!ipxe\necho romlab-test script on ${netX/chip}\n")
    r, doc = boot_json("--nic", "rtl8139", "--rom", rom, "--script", ok, "--expect", "romlab-test script on rtl8139",
                       "--timeout", "120")
    assert r.returncode == 0, r.stderr
    assert doc["goal"] == "script" and doc["id"] == "10ec:8139"
    assert [h["path"] for h in doc["http"]] == ["/boot.ipxe", "/file/user.ipxe", "/status/ok"]
    bad = tmp_path / "bad.ipxe"
    bad.write_text("#!ipxe\nimgfetch no-such-file\n")
    r = run_romlab("boot", "--nic", "rtl8139", "--rom", rom, "--script", bad, "--timeout", "120", timeout=240)
    assert r.returncode == 1
    last = r.stderr.decode().strip().splitlines()[-1]
    # iPXE's error for a missing HTTP file: ENOENT, 0x2d0c613b (https://ipxe.org/err/2d0c613b).
    assert last == "romlab boot: error: failed: the script failed with iPXE error 2d0c613b (https://ipxe.org/2d0c613b)"
    assert_clean()


def test_unusable_input_is_one_line_exit_2(tmp_path):
    rom = corpus(IPXE_QEMU / "pxe-e1000.rom")
    r = run_romlab("boot", "--nic", "e1001", "--rom", rom)
    assert r.returncode == 2
    err = r.stderr.decode().strip().splitlines()
    assert len(err) == 1 and err[0].startswith("romlab boot: error: unknown NIC model 'e1001'; this QEMU ("), err
    # The models offered are the installed QEMU's own PCI network devices.
    help_text = subprocess.run(["qemu-system-x86_64", "-device", "help"], capture_output=True, text=True).stdout
    for name in ("e1000", "e1000e", "rtl8139", "virtio-net-pci"):
        assert f'name "{name}", bus PCI' in help_text and f" {name}," in err[0] + ","
    r = run_romlab("boot", "--nic", "e1000,speed=10", "--rom", rom)
    assert r.returncode == 2
    assert r.stderr.decode().strip().splitlines() == [
        "romlab boot: error: bad NIC option 'speed=10' in 'e1000,speed=10'; e1000 has no property 'speed' "
        "(`qemu-system-x86_64 -device e1000,help` lists them) and romlab's own are capture=, link="]
    env = dict(os.environ, PATH=str(tmp_path))  # no qemu-system-x86_64 on PATH
    r = run_romlab("boot", "--nic", "e1000", "--rom", rom, env=env)
    assert r.returncode == 2
    assert r.stderr.decode().strip().splitlines() == [
        "romlab boot: error: qemu-system-x86_64 is not installed; install Debian's qemu-system-x86 "
        "(scripts/setup.sh does)"]
    assert_clean()


@pytest.mark.root
def test_non_ipxe_pxe_client_gets_the_nbp_then_the_script_from_dnsmasq(tmp_path):
    """OVMF's own PXE client (no ROM on the virtio NIC: OVMF's VirtioNetDxe drives it) sends no
    "iPXE" user class, so dnsmasq hands it snponly.efi over TFTP; that iPXE then gets the script."""
    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    script = tmp_path / "s.ipxe"
    script.write_text("#!ipxe\necho romlab-test via ${netX/chip}\n")
    r, doc = boot_json("--nic", "virtio-net", "--rom", "none", "--firmware", "ovmf", "--script", script,
                       "--dhcp", "dnsmasq", "--expect", "romlab-test via SNP", "--timeout", "240", timeout=360)
    assert r.returncode == 0, r.stderr
    log = doc["dhcp_log"]
    tags = [ln.split("tags: ", 1)[1] for ln in log if " tags: " in ln]
    assert tags and "ipxe" not in tags[0].split(", ")  # the firmware's PXE client
    assert any("ipxe" in t.split(", ") for t in tags[1:])  # then iPXE from snponly.efi
    assert any("snponly.efi" in ln and "dnsmasq-tftp" in ln and "sent" in ln for ln in log)
    assert kinds(doc, "pxe_nbp")[0]["name"] == "snponly.efi"
    assert kinds(doc, "netdev")[0]["chip"] == "SNP"
    assert_clean()


@pytest.mark.root
def test_dnsmasq_path_cleans_up_after_a_hang_a_sigterm_and_a_sigkill(tmp_path):
    """The namespace, its tap and dnsmasq exist while the boot runs, and are gone after it, however
    it ends: the time limit, SIGTERM, or SIGKILL (then the next dnsmasq run sweeps the namespace)."""
    import signal

    if os.geteuid() != 0:
        pytest.skip("needs root for a network namespace")
    rom = tmp_path / "hang.rom"
    rom.write_bytes(hanging_rom())
    cmd = [sys.executable, "-m", "romlab", "boot", "--nic", "e1000", "--rom", str(rom), "--dhcp", "dnsmasq"]

    def started(p):
        track(p.pid)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and p.poll() is None:
            procs = romlab_processes()
            if romlab_netns() and any("dnsmasq" in c for c in procs) and any("qemu-system" in c for c in procs):
                return True
            time.sleep(0.2)
        return False

    p = subprocess.Popen(cmd + ["--timeout", "5"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert started(p)
    _, err = p.communicate(timeout=90)
    assert p.returncode == 1 and err.decode().strip().splitlines()[-1].startswith("romlab boot: error: hung:")
    assert_clean()

    p = subprocess.Popen(cmd + ["--timeout", "100"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert started(p)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=30)
    assert p.returncode == 130 and err.decode().strip().splitlines()[-1] == "romlab boot: interrupted"
    assert_clean()

    before = set(romlab_tempdirs())
    p = subprocess.Popen(cmd + ["--timeout", "100"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert started(p)
    stale = romlab_netns()
    p.kill()
    p.communicate()
    deadline = time.monotonic() + 10
    while romlab_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not romlab_processes()  # QEMU and dnsmasq died with their parent
    assert stale and romlab_netns() == stale  # nothing could remove the namespace...
    from romlab.lab.netns import remove_stale_netns

    assert set(stale) <= set(remove_stale_netns())  # ...until the next run sweeps it (others' stale ones too)
    assert romlab_netns() == []
    import shutil
    for d in set(romlab_tempdirs()) - before:  # SIGKILL left romlab no chance to remove them
        shutil.rmtree(d, ignore_errors=True)
    assert_clean()
