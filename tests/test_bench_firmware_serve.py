"""`romlab serve` in a lab built from network namespaces: a bridge with two QEMU clients on taps,
and a plain DHCP server (Debian's dnsmasq, addresses only) in a namespace of its own behind a
veth pair. serve must refuse to start before that server exists, then proxy for it and bring
both clients through the bench, printing both results."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import pytest
from conftest import IPXE_QEMU, corpus
from json_conventions import check
from qemu_console import leftovers

pytestmark = [pytest.mark.qemu, pytest.mark.root]

NET = "10.77.0"


def ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True)


class Lab:
    """Namespaces for the test's network: LAB (bridge, taps, serve) and DHCP (a plain server)."""

    def __init__(self):
        self.lab = f"rltest-lab-{os.getpid()}"
        self.dhcp = f"rltest-dhcp-{os.getpid()}"
        self.procs: list[subprocess.Popen] = []

    def __enter__(self):
        ip("netns", "add", self.lab)
        ip("netns", "add", self.dhcp)
        ip("-n", self.lab, "link", "set", "lo", "up")
        ip("-n", self.lab, "link", "add", "br0", "type", "bridge")
        ip("-n", self.lab, "addr", "add", f"{NET}.1/24", "dev", "br0")
        ip("-n", self.lab, "link", "set", "br0", "up")
        for tap in ("c1", "c2"):
            ip("-n", self.lab, "tuntap", "add", "dev", tap, "mode", "tap")
            ip("-n", self.lab, "link", "set", tap, "master", "br0", "up")
        ip("-n", self.lab, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", self.dhcp)
        ip("-n", self.lab, "link", "set", "v0", "master", "br0", "up")
        ip("-n", self.dhcp, "addr", "add", f"{NET}.2/24", "dev", "v1")
        ip("-n", self.dhcp, "link", "set", "v1", "up")
        return self

    def plain_dhcp(self, workdir):
        """Start dnsmasq as a plain DHCP server and return once it says it serves its range: it logs
        that line after binding its sockets. Its log is read to the end so it never blocks on it."""
        p = subprocess.Popen(["ip", "netns", "exec", self.dhcp, "dnsmasq", "--keep-in-foreground",
                              "--conf-file=/dev/null", "--port=0", "--interface=v1", "--bind-interfaces",
                              f"--dhcp-range={NET}.100,{NET}.150,255.255.255.0,1h", "--user=root", "--group=root",
                              f"--dhcp-leasefile={workdir}/leases", "--pid-file=", "--log-facility=-"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        log: list[str] = []
        answered = threading.Event()  # set on the serving line, or when dnsmasq exits

        def read_log():
            for line in p.stderr:
                log.append(line.rstrip("\n"))
                if "DHCP, IP range" in line:
                    answered.set()
            answered.set()

        threading.Thread(target=read_log, daemon=True).start()
        assert answered.wait(30) and any("DHCP, IP range" in ln for ln in log), \
            f"dnsmasq did not start serving DHCP: {log}"
        return p

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        for ns in (self.lab, self.dhcp):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def serve_cmd(lab, *args):
    return ["ip", "netns", "exec", lab.lab, sys.executable, "-m", "romlab", "serve", "--interface", "br0", *args]


def test_serve_refuses_without_a_dhcp_server_then_benches_two_clients(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    from romlab.lab.qemu import Machine, Netdev, Qemu

    with Lab() as lab:
        r = subprocess.run(serve_cmd(lab, "--payload", "1M", "--probe-seconds", "2"), capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 2
        assert r.stderr.strip().splitlines() == [
            "romlab serve: error: no DHCP server answered on br0 within 2 s; proxy-DHCP only adds boot "
            "information to another server's offers, so nothing would boot. Start one, or give --dhcp-range "
            "START,END to hand out addresses from here"]

        lab.plain_dhcp(tmp_path)
        serve = subprocess.Popen(serve_cmd(lab, "--payload", "1M", "--runs", "1", "--clients", "2", "--timeout",
                                           "600", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        lab.procs.append(serve)
        err_lines: list[str] = []
        ready = threading.Event()

        def read_err():
            for line in serve.stderr:
                err_lines.append(line.rstrip("\n"))
                if "serving on br0" in line:
                    ready.set()

        threading.Thread(target=read_err, daemon=True).start()
        assert ready.wait(30), err_lines
        assert err_lines[0].startswith(f"romlab serve: DHCP server(s) seen: {NET}.2 (offered {NET}.1")
        assert f"(proxy-DHCP on {NET}.0/24)" in err_lines[1]
        clients = [("e1000", IPXE_QEMU / "pxe-e1000.rom", "c1", "52:54:00:77:00:01"),
                   ("rtl8139", IPXE_QEMU / "pxe-rtl8139.rom", "c2", "52:54:00:77:00:02")]
        vms = []
        try:
            for nic, rom, tap, mac in clients:
                vm = Qemu(Machine(nic=nic, rom=str(corpus(rom)), netdev=Netdev("tap", ifname=tap, netns=lab.lab),
                                  mac=mac))
                vms.append(vm.start())
            out, _ = serve.communicate(timeout=900)
        finally:
            tails = [vm.console.tail(15) for vm in vms]
            for vm in vms:
                vm.stop()
        assert serve.returncode == 0, (err_lines, tails)
        results = {d["mac"]: d for d in map(json.loads, out.strip().splitlines())}
        assert set(results) == {"52:54:00:77:00:01", "52:54:00:77:00:02"}
        assert results["52:54:00:77:00:01"]["native_driver"] == "82540em"
        assert results["52:54:00:77:00:02"]["native_driver"] == "rtl8139"
        for res in results.values():
            assert res["ip"].startswith(f"{NET}.1")  # the plain server's range, .100-.150
            for path in ("native", "undi"):
                assert res[path]["complete"] and res[path]["bytes_sent"] == [1 << 20]
            assert res["ratio_native_over_undi"] == pytest.approx(res["native"]["median_mbit_s"]
                                                                  / res["undi"]["median_mbit_s"])
            assert next(iter(res)) == "schema" and res["schema"] == "romlab.serve/1"
            assert check(res, "romlab.serve/1") == [] and res["input"] == "interface:br0"  # docs/conventions.md
            assert res["finished"].endswith("+00:00")
    left = leftovers()
    assert not any(left.values()), left
