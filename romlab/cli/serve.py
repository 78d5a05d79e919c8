"""``romlab serve``: DHCP (proxy by default), TFTP and HTTP for benching real machines' NICs."""
from __future__ import annotations

NAME = "serve"
HELP = "serve the firmware bench to machines on a network: proxy-DHCP, TFTP and HTTP on an interface"
DESCRIPTION = """\
Run dnsmasq (proxy-DHCP, TFTP) and romlab's HTTP server on INTERFACE so that machines booting from
the network there run the firmware bench: a client whose ROM is iPXE downloads the payload with its
native driver, then chains undionly.kpxe and downloads it through the ROM's UNDI; a client whose
ROM is not iPXE gets undionly.kpxe by PXE and is measured through the UNDI. Each client's result is
printed as it arrives. Proxy-DHCP hands out no addresses: serve first sends a DHCPDISCOVER and refuses
to start when no other DHCP server answers; --dhcp-range START,END makes it the DHCP server instead.
Needs root. Runs until interrupted, --clients N clients have finished, or --timeout.

exit status:
  0  done (all clients asked for finished)
  1  timed out first
  2  unusable set-up"""

EXAMPLES = [
    ("romlab serve --interface eth1", "proxy-DHCP beside the lab's own DHCP server on eth1 (root)"),
    ("romlab serve -i eth1 --dhcp-range 10.0.0.100,10.0.0.150 --clients 2",
     "be the DHCP server; stop when two machines have finished"),
]


def add_arguments(p) -> None:
    p.add_argument("--interface", "-i", required=True, metavar="IF", help="interface the lab machines are on")
    p.add_argument("--payload", default="16M", metavar="SIZE", help="download size (default 16M)")
    p.add_argument("--runs", type=int, default=3, metavar="N", help="downloads per path and client (default 3)")
    p.add_argument("--dhcp-range", metavar="START,END",
                   help="be the DHCP server for these addresses instead of a proxy")
    p.add_argument("--probe-seconds", type=float, default=4.0, metavar="S",
                   help="how long to wait for another DHCP server's offer (default 4)")
    p.add_argument("--port", type=int, default=0, help="HTTP port (default: any free port)")
    p.add_argument("--clients", type=int, metavar="N", help="stop after N clients have finished")
    p.add_argument("--timeout", type=float, metavar="S", help="stop after S seconds")
    p.add_argument("--json", action="store_true", help="print each client's result as one JSON line")


def run(args) -> int:
    import json
    import os
    import shutil
    import tempfile
    import time

    from hw.errors import UsageError
    from romlab.bench.firmware import IPXE_PXE, PATHS
    from romlab.cli import note
    from romlab.conventions import document, utc_now
    from romlab.lab import serve as labserve
    from romlab.lab.boot import UNDIONLY
    from romlab.lab.dhcpprobe import find_dhcp_servers
    from romlab.lab.dnsmasq import Dnsmasq
    from romlab.lab.http import (
        LabHttp,
        bind_socket,
        human_size,
        parse_size,
        payload_bytes,
    )
    from romlab.lab.netns import interface_ipv4
    from romlab.lab.qemu import terminate_on_sigterm

    terminate_on_sigterm()
    if os.geteuid() != 0:
        raise UsageError("serve needs root for the DHCP and TFTP ports and DHCP probing (run romlab as root or with sudo)")
    if args.runs < 1:
        raise UsageError("--runs must be 1 or more")
    size = parse_size(args.payload)
    iface = interface_ipv4(args.interface)

    def say(msg: str) -> None:
        note(f"romlab serve: {msg}")

    if not args.dhcp_range:
        servers = find_dhcp_servers(args.interface, args.probe_seconds)
        others = [s for s in servers if s["server"] != str(iface.ip)]
        if not others:
            raise UsageError(f"no DHCP server answered on {args.interface} within {args.probe_seconds:g} s; "
                           "proxy-DHCP only adds boot information to another server's offers, so nothing would "
                           "boot. Start one, or give --dhcp-range START,END to hand out addresses from here")
        say("DHCP server(s) seen: " + ", ".join(f"{s['server']} (offered {s['offered']})" for s in others))

    work = tempfile.mkdtemp(prefix="romlab-serve-")
    dns = http = None
    try:
        tftp = os.path.join(work, "tftp")
        os.mkdir(tftp)
        for f in (UNDIONLY, IPXE_PXE):
            shutil.copyfile(f, os.path.join(tftp, os.path.basename(f)))
        plan = labserve.LabPlan(args.runs, size, str(iface.ip))
        http = LabHttp(bind_socket(str(iface.ip), args.port), payload=payload_bytes(size), planner=plan,
                       files={"undionly.kpxe": UNDIONLY})
        http.start()
        url = f"http://{iface.ip}:{http.address[1]}/boot.ipxe"
        dns = Dnsmasq(labserve.dnsmasq_args(args.interface, iface, tftp, url, args.dhcp_range), None, work)
        if not dns.wait_for(r"DHCP, (IP range|proxy on subnet)", 10):
            raise UsageError("dnsmasq did not start: " + (" / ".join(dns.lines[-3:]) or "no output"))
        mode = f"DHCP {args.dhcp_range}" if args.dhcp_range else f"proxy-DHCP on {iface.network}"
        say(f"serving on {args.interface} ({mode}); script {url}; payload {human_size(size)} x {args.runs}")
        t0 = time.monotonic()
        done = 0
        seen_runs: set[str] = set()
        while True:
            time.sleep(0.5)
            for ident, tr in sorted(http.transfers.items(), key=lambda kv: kv[1].start):
                if tr.complete and ident not in seen_runs:
                    seen_runs.add(ident)
                    if not args.json:
                        path_run = ident.split("_", 1)[1]
                        say(f"{tr.client} {path_run}: {human_size(tr.sent)} in {tr.seconds:.2f} s = "
                            f"{tr.size * 8 / tr.seconds / 1e6:.1f} Mbit/s")
            with plan.lock:
                clients = list(plan.clients.values())
            for c in clients:
                want = plan.expected_paths(c)
                fin = {p for p in PATHS if http.requested_with("/status/finished", tag=c.tag(p))}
                if c.reported or not set(want) <= fin:
                    continue
                c.reported = True
                done += 1
                res = document("romlab.serve/1", input=f"interface:{args.interface}", finished=utc_now(),
                               mac=c.mac, ip=c.ip,
                               native_driver=c.native_chip,
                               **{p: labserve.path_result(http, c.tag(p), args.runs) for p in want})
                if "native" in res and res["native"].get("median_mbit_s") and res["undi"].get("median_mbit_s"):
                    res["ratio_native_over_undi"] = res["native"]["median_mbit_s"] / res["undi"]["median_mbit_s"]
                if args.json:
                    print(json.dumps(res), flush=True)
                else:
                    parts = []
                    for p in want:
                        r = res[p]
                        parts.append(f"{'native ' + (c.native_chip or '') if p == 'native' else 'UNDI'} "
                                     + (f"{r['median_mbit_s']:.1f} Mbit/s (spread {r['spread_pct']:.0f}%)"
                                        if r.get("median_mbit_s") else "incomplete"))
                    ratio = res.get("ratio_native_over_undi")
                    print(f"client {c.mac} {c.ip}: " + ", ".join(parts)
                          + (f"; UNDI {ratio:.1f}x slower" if ratio else ""), flush=True)
            if args.clients and done >= args.clients:
                return 0
            if dns.proc.poll() is not None:
                raise UsageError("dnsmasq stopped: " + (" / ".join(dns.lines[-3:]) or "no output"))
            if args.timeout and time.monotonic() - t0 > args.timeout:
                say(f"timed out after {args.timeout:g} s with {done} client(s) finished")
                return 1 if args.clients else 0
    except KeyboardInterrupt:
        say("stopped")
        return 0
    finally:
        if dns is not None:
            dns.stop()
        if http is not None:
            http.close()
        shutil.rmtree(work, ignore_errors=True)
