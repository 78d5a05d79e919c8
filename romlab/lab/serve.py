"""``romlab serve``: the bench's DHCP/TFTP/HTTP set-up on a real interface, for physical machines.

dnsmasq runs as a proxy-DHCP server by default (boot information only; another DHCP server
hands out addresses) or, with a range, as the DHCP server. Clients are told apart by DHCP
user class: a PXE ROM that is not iPXE is sent Debian's undionly.kpxe by TFTP; an iPXE client is
sent romlab's script over HTTP. Each client (by MAC) is then driven by :class:`LabPlan`:

* a client that comes up on a native iPXE driver (its ROM is iPXE) downloads the payload N
  times natively, then chains undionly.kpxe from dnsmasq's TFTP and downloads N times again
  through the ROM's UNDI, in the same boot;
* a client that comes up on undionly (its ROM is not iPXE) downloads N times through the UNDI.

Transfers are timed by :class:`romlab.lab.http.LabHttp` exactly as in ``romlab bench firmware``;
a client's result is reported as soon as its last path finishes.
"""
from __future__ import annotations

import ipaddress
import re
import statistics
import threading
from dataclasses import dataclass, field

from hw.errors import LabError
from romlab.bench.firmware import bench_script, mbit
from romlab.lab.http import LabHttp, ScriptRequest, first_script


@dataclass
class LabClient:
    mac: str
    ip: str = ""
    native_chip: str | None = None
    paths: list[str] = field(default_factory=list)  # the paths started, in order
    finished: list[str] = field(default_factory=list)
    reported: bool = False

    def tag(self, path: str) -> str:
        return re.sub(r"[^0-9a-f]", "", self.mac) + "_" + path


class LabPlan:
    """Decides each client's next script from the driver it reports; remembers clients by MAC."""

    def __init__(self, runs: int, size: int, tftp_host: str):
        self.runs, self.size, self.tftp_host = runs, size, tftp_host
        self.lock = threading.Lock()
        self.clients: dict[str, LabClient] = {}

    def __call__(self, req: ScriptRequest) -> str | None:
        if req.name == "boot.ipxe":
            return first_script(req.base)
        mac = req.mac
        if not mac:
            return "#!ipxe\necho romlab: no MAC address in the request\nexit 1\n"
        with self.lock:
            c = self.clients.setdefault(mac, LabClient(mac))
            c.ip = req.query.get("ip", req.client)
            if req.chip == "undionly":
                if "undi" in c.paths:
                    return "#!ipxe\necho romlab: this client has been measured\nexit 0\n"
                c.paths.append("undi")
                return bench_script(req.base, "undi", c.tag("undi"), self.runs, self.size)
            if "native" in c.paths:
                return "#!ipxe\necho romlab: this client has been measured\nexit 0\n"
            c.paths.append("native")
            c.native_chip = req.chip
            then = ["echo romlab: chaining undionly.kpxe to measure the ROM's UNDI",
                    f"chain tftp://{self.tftp_host}/undionly.kpxe"]
            return bench_script(req.base, "native", c.tag("native"), self.runs, self.size, then=then)

    def expected_paths(self, c: LabClient) -> list[str]:
        return ["native", "undi"] if c.native_chip else ["undi"]


def path_result(lab: LabHttp, tag: str, runs: int) -> dict:
    speeds, sent, complete = [], [], True
    for k in range(1, runs + 1):
        tr = lab.transfers.get(f"{tag}-{k}")
        if tr is None or not tr.complete:
            complete = False
            continue
        sent.append(tr.sent)
        speeds.append(mbit(tr.size, tr.seconds))
    out = {"complete": complete, "runs_mbit_s": [round(s, 3) for s in speeds], "bytes_sent": sent}
    if speeds:
        med = statistics.median(speeds)
        out.update(median_mbit_s=med, min_mbit_s=min(speeds), max_mbit_s=max(speeds),
                   spread_pct=(max(speeds) - min(speeds)) / med * 100)
    return out


def dnsmasq_args(ifname: str, iface: ipaddress.IPv4Interface, tftp_dir: str, script_url: str,
                 dhcp_range: str | None) -> list[str]:
    args = [f"--interface={ifname}", "--bind-interfaces", "--except-interface=lo",
            "--dhcp-userclass=set:ipxe,iPXE", "--enable-tftp", f"--tftp-root={tftp_dir}"]
    if dhcp_range:
        start, _, end = dhcp_range.partition(",")
        if not end:
            raise LabError("--dhcp-range wants START,END (two IPv4 addresses on the interface's network)")
        for a in (start, end):
            try:
                if ipaddress.IPv4Address(a) not in iface.network:
                    raise LabError(f"--dhcp-range: {a} is not on {iface.network}, the network of the interface")
            except ipaddress.AddressValueError:
                raise LabError(f"--dhcp-range: {a!r} is not an IPv4 address") from None
        args += [f"--dhcp-range={start},{end},{iface.netmask},1h",
                 f"--dhcp-boot=tag:ipxe,{script_url}", f"--dhcp-boot=tag:!ipxe,undionly.kpxe,,{iface.ip}"]
    else:
        # Proxy-DHCP: boot information only. PXE option 6 = 0x2b: no multicast or broadcast
        # discovery, fetch the boot file named in the reply.
        args += [f"--dhcp-range={iface.network.network_address},proxy",
                 "--dhcp-option=vendor:PXEClient,6,2b",
                 "--pxe-service=tag:!ipxe,x86PC,romlab UNDI,undionly.kpxe",
                 f"--pxe-service=tag:ipxe,x86PC,romlab bench,{script_url}"]
    return args
