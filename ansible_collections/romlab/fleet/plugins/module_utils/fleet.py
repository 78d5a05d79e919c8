# -*- coding: utf-8 -*-
# Copyright: romlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the romlab modules share on the managed host: running romlab's ``--json`` verbs, finding
the NICs and the interfaces and MACs the kernel gave them, the NIC that carries the management
connection, and choosing NICs by BDF, PCI IDs or MAC.

romlab runs as a program (``/opt/romlab/bin/romlab`` by default) rather than being imported, so
the modules work with whatever Python Ansible found on the host, and romlab with the one in its
own virtual environment.
"""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import json
import os
import re
import socket
import subprocess

BDF_RE = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
SYS_PCI = "/sys/bus/pci/devices"
SYS_NET = "/sys/class/net"
TIMEOUT = 900
# The targets option of all three modules (documented once, in doc_fragments/targets.py): how
# each NIC's flash is reached.
TARGET_SPEC = dict(bdf=dict(type="str"), mac=dict(type="str"), programmer=dict(type="str"),
                   layout=dict(type="str"))
TARGETS_ARG = dict(type="list", elements="dict", default=[], options=TARGET_SPEC, required_one_of=[("bdf", "mac")])


class RomlabFailed(Exception):
    """romlab ran and said no (its one-line message), or could not be run at all."""

    def __init__(self, message, rc=None, doc=None):
        super(RomlabFailed, self).__init__(message)
        self.rc = rc
        self.doc = doc


def run_romlab(romlab, args, env=None, ok=(0,)):
    """(exit status, JSON document) of ``romlab ARGS --json``; RomlabFailed with romlab's own
    message when the status is not in ``ok``."""
    cmd = [romlab, "-q"] + list(args) + ["--json"]
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=full_env,
                              timeout=TIMEOUT, check=False)
    except OSError as exc:
        raise RomlabFailed("cannot run %s: %s (is romlab installed there? see the romlab option)" % (romlab, exc))
    except subprocess.TimeoutExpired:
        raise RomlabFailed("%s did not finish within %d s" % (" ".join(cmd), TIMEOUT))
    err = proc.stderr.decode("utf-8", "replace").strip()
    doc = None
    out = proc.stdout.decode("utf-8", "replace").strip()
    if out:
        try:
            doc = json.loads(out)
        except ValueError:
            doc = None
    if proc.returncode not in ok:
        raise RomlabFailed(err.splitlines()[-1] if err else "%s exited with %d" % (" ".join(cmd), proc.returncode),
                           rc=proc.returncode, doc=doc)
    if doc is None:
        raise RomlabFailed("%s printed no JSON document (%s)" % (" ".join(cmd), err or "no message"),
                           rc=proc.returncode)
    return proc.returncode, doc


# Runs several romlab commands in one Python process through romlab's own entry point
# (romlab.cli.main), each with its own stdout and stderr: on a slow host (a TCG guest) every
# Python start and romlab import costs seconds.
_BATCH = r"""
import io, json, sys
from romlab.cli import main
out = []
for argv in json.load(sys.stdin):
    o, e = io.StringIO(), io.StringIO()
    so, se = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = o, e
    try:
        rc = main(argv)
    except SystemExit as exc:
        rc = exc.code if isinstance(exc.code, int) else 2
    finally:
        sys.stdout, sys.stderr = so, se
    out.append([rc, o.getvalue(), e.getvalue()])
json.dump(out, sys.stdout)
"""


def romlab_python(romlab):
    """The interpreter of the romlab program (its script's #! line), or None."""
    try:
        with open(romlab, "rb") as fh:
            first = fh.readline(4096).decode("utf-8", "replace")
    except (IOError, OSError):
        return None
    if first.startswith("#!") and "python" in first:
        return first[2:].strip().split()[0]
    return None


def run_many(romlab, argvs, env=None):
    """[(exit status, JSON document or None, message)] of ``romlab ARGV --json`` for each ARGV,
    in one process when romlab is a Python script, else one process each."""
    python = romlab_python(romlab)
    argvs = [["-q"] + list(a) + ["--json"] for a in argvs]
    if python is None:
        res = []
        for a in argvs:
            try:
                rc, doc = run_romlab(romlab, a[1:-1], env, ok=tuple(range(256)))
                res.append((rc, doc, ""))
            except RomlabFailed as exc:
                res.append((exc.rc, exc.doc, str(exc)))
        return res
    full_env = dict(os.environ)
    full_env.update(env or {})
    try:
        proc = subprocess.run([python, "-c", _BATCH], input=json.dumps(argvs).encode(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=full_env, timeout=TIMEOUT, check=False)
        raw = json.loads(proc.stdout.decode("utf-8", "replace"))
    except OSError as exc:
        raise RomlabFailed("cannot run %s: %s (is romlab installed there? see the romlab option)" % (python, exc))
    except subprocess.TimeoutExpired:
        raise RomlabFailed("romlab did not finish within %d s" % TIMEOUT)
    except ValueError:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise RomlabFailed("romlab (%s) failed: %s" % (python, err.splitlines()[-1] if err else "no output"))
    res = []
    for rc, out, err in raw:
        try:
            doc = json.loads(out) if out.strip() else None
        except ValueError:
            doc = None
        lines = err.strip().splitlines()
        res.append((rc, doc, lines[-1] if lines else ""))
    return res


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def normalize_bdf(text):
    """``03:00.0`` or ``0000:03:00.0`` -> ``0000:03:00.0``; ValueError otherwise."""
    t = str(text).strip().lower()
    if re.match(r"^[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$", t):
        t = "0000:" + t
    if not BDF_RE.match(t):
        raise ValueError("%r is not a PCI address (DDDD:BB:DD.F or BB:DD.F)" % (text,))
    return t


def normalize_mac(text):
    t = str(text).strip().lower().replace("-", ":")
    if not re.match(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$", t):
        raise ValueError("%r is not a MAC address" % (text,))
    return t


def normalize_ids(text):
    """``8086:100E`` -> ``8086:100e``."""
    t = str(text).strip().lower()
    if not re.match(r"^[0-9a-f]{4}:[0-9a-f]{4}$", t):
        raise ValueError("%r is not a PCI vendor:device pair (e.g. 8086:100e)" % (text,))
    return t


def _read(path):
    try:
        with open(path) as fh:
            return fh.read().strip()
    except (IOError, OSError):
        return None


def pci_of_interface(name, sys_net=SYS_NET):
    """The PCI function behind a network interface (walking up through virtio and the like), or None."""
    try:
        real = os.path.realpath(os.path.join(sys_net, name, "device"))
    except OSError:
        return None
    for part in reversed(real.split("/")):
        if BDF_RE.match(part):
            return part
    return None


def interfaces(bdf, sys_pci=SYS_PCI, sys_net=SYS_NET):
    """[{name, mac}] of the interfaces the kernel made for the PCI function ``bdf``."""
    out = []
    try:
        names = sorted(os.listdir(sys_net))
    except OSError:
        names = []
    for name in names:
        if pci_of_interface(name, sys_net) == bdf:
            out.append({"name": name, "mac": _read(os.path.join(sys_net, name, "address"))})
    return out


class ManagementUnknown(Exception):
    """The connection is SSH but the NIC carrying it could not be found: flashing blind could cut
    the host off, so the modules refuse unless management_nics is given."""


def _ip_json(args):
    """``ip -j ARGS`` (iproute2) as a list; ManagementUnknown when it cannot be run or read."""
    try:
        proc = subprocess.run(["ip", "-j"] + list(args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              timeout=30, check=False)
        if proc.returncode != 0:
            raise ManagementUnknown("`ip -j %s` failed: %s" % (" ".join(args), proc.stderr.decode("utf-8", "replace")
                                                               .strip() or "exit status %d" % proc.returncode))
        return json.loads(proc.stdout.decode("utf-8", "replace") or "[]")
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise ManagementUnknown("`ip -j %s` could not be run or read (%s)" % (" ".join(args), exc))


def connection_interfaces(client, server, ip=_ip_json):
    """The interfaces that carry an SSH connection: the one the route back to the client leaves
    by (``ip route get CLIENT``) and the one holding the server address."""
    found = set()
    for route in ip(["route", "get", client]):
        if route.get("dev"):
            found.add(route["dev"])
    for d in ip(["addr"]):
        if server in [a.get("local") for a in d.get("addr_info", [])]:
            found.add(d.get("ifname"))
    found.discard(None)
    return found


def lower_pci(name, sys_net=SYS_NET, seen=None):
    """The PCI functions under an interface: its own, or, for a bond, bridge, VLAN or macvlan, those of
    the interfaces below it (``lower_*`` links, a bridge's ``brif/`` ports), all the way down."""
    seen = set() if seen is None else seen
    if name in seen:
        return set()
    seen.add(name)
    bdf = pci_of_interface(name, sys_net)
    if bdf:
        return set([bdf])
    out = set()
    base = os.path.join(sys_net, name)
    try:
        entries = os.listdir(base)
    except OSError:
        entries = []
    below = [e[len("lower_"):] for e in entries if e.startswith("lower_")]
    try:
        below += os.listdir(os.path.join(base, "brif"))
    except OSError:
        pass
    for lower in below:
        out |= lower_pci(lower, sys_net, seen)
    return out


def same_card(bdfs, sys_pci=SYS_PCI):
    """Every PCI function of the same bus:device as any of ``bdfs``: a multi-port card's other ports
    share its flash, so flashing through one of them rewrites the management port's ROM too."""
    out = set(bdfs)
    try:
        present = os.listdir(sys_pci)
    except OSError:
        present = []
    slots = set(b.rsplit(".", 1)[0] for b in bdfs)
    for b in present:
        if BDF_RE.match(b) and b.rsplit(".", 1)[0] in slots:
            out.add(b)
    return out


def management_bdfs(extra=(), ssh_connection=None, environ=None, ip=_ip_json, sys_net=SYS_NET, sys_pci=SYS_PCI):
    """The PCI functions that carry the connection Ansible came in on, with every other function of
    the same card, plus any named in ``extra``. ``ssh_connection`` is SSH_CONNECTION as the login
    shell saw it (the action plugin reads it before become's sudo strips it from the environment).
    Over SSH, when no PCI function can be found for the connection (``ip`` fails, or the interface
    leads to none), ManagementUnknown unless ``extra`` names the management NICs explicitly."""
    environ = os.environ if environ is None else environ
    found = set(normalize_bdf(b) for b in extra)
    conn = (ssh_connection or environ.get("SSH_CONNECTION", "")).split()
    if len(conn) != 4:
        return found
    client, server = conn[0], conn[2]
    try:
        ifaces = connection_interfaces(client, server, ip)
        carriers = set()
        for name in ifaces:
            carriers |= lower_pci(name, sys_net)
        if not carriers:
            raise ManagementUnknown("the SSH connection (%s) runs over %s, which leads to no PCI function" %
                                    (" ".join(conn), ", ".join(sorted(ifaces)) or "no interface found"))
    except ManagementUnknown as exc:
        if found:
            return found
        raise ManagementUnknown("%s; refusing to flash without knowing which NIC carries the management "
                                "connection: list it (and its card's other ports) in management_nics" % exc)
    return found | same_card(carriers, sys_pci)


def list_nics(romlab):
    """The network-class PCI functions romlab lists, each with its interfaces."""
    _, doc = run_romlab(romlab, ["list"])
    nics = []
    for dev in doc.get("devices", []):
        if not str(dev.get("class", "")).startswith("02"):
            continue
        nic = dict(dev)
        nic["interfaces"] = interfaces(dev["bdf"])
        nics.append(nic)
    return nics


def selected(nic, select):
    """Whether ``nic`` matches the selection {bdf: [...], ids: [...], mac: [...]}; an empty
    selection matches every NIC."""
    bdfs = [normalize_bdf(b) for b in select.get("bdf") or []]
    ids = [normalize_ids(i) for i in select.get("ids") or []]
    macs = [normalize_mac(m) for m in select.get("mac") or []]
    if not (bdfs or ids or macs):
        return True
    nic_macs = set((i.get("mac") or "").lower() for i in nic.get("interfaces", []))
    return nic["bdf"] in bdfs or nic["id"] in ids or bool(nic_macs & set(macs))


def target_of(nic, targets):
    """(romlab's target arguments, layout arguments, description) for a NIC."""
    macs = set((i.get("mac") or "").lower() for i in nic["interfaces"])
    for t in targets:
        if (t.get("bdf") and normalize_bdf(t["bdf"]) == nic["bdf"]) or \
                (t.get("mac") and normalize_mac(t["mac"]) in macs):
            layout = ["--layout", t["layout"]] if t.get("layout") else []
            if t.get("programmer"):
                return ["--programmer", t["programmer"]], layout, t["programmer"]
            return ["--pci", nic["bdf"], "--unbind"], layout, "pci:" + nic["bdf"]
    return ["--pci", nic["bdf"], "--unbind"], [], "pci:" + nic["bdf"]


def rom_summary(romlab, path, results=None):
    """What matters about an option ROM file for a fleet report: size, sha256, each image's kind,
    PCI IDs and iPXE build ID and version, every checksum's state, and lint's verdict.
    ``results`` are the (status, document, message) of ``inspect PATH`` and ``lint PATH`` when
    the caller ran them already (:func:`summary_argvs`)."""
    try:
        summary = {"size": os.path.getsize(path), "sha256": sha256_file(path), "images": []}
    except (IOError, OSError) as exc:
        return {"path": path, "error": "cannot read %s: %s" % (path, exc), "images": []}
    (irc, doc, ierr), (lrc, lint, lerr) = results or run_many(romlab, summary_argvs(path))
    if doc is None or irc not in (0, 1):
        summary["error"] = ierr or "romlab inspect exited with %s" % irc
        return summary
    for im in doc.get("images", []):
        pcir = im.get("pcir") or {}
        payload = im.get("ipxe_payload") or {}
        summary["images"].append({
            "kind": im.get("kind"),
            "id": "%s:%s" % (pcir.get("vendor"), pcir.get("device")) if pcir else None,
            "length": im.get("length"),
            "ipxe_build_id": (im.get("ipxe") or {}).get("build_id"),
            "ipxe_version": payload.get("version"),
            "ipxe_build": payload.get("build"),
            "product": (im.get("pnp") or {}).get("product"),
            "checksums": dict((c.get("name"), "valid" if c.get("valid") else "bad")
                              for c in im.get("checksums") or []),
        })
    if lint is None:
        summary["lint"] = {"verdict": "unusable", "error": lerr}
    else:
        sev = {}
        for f in lint.get("findings", []):
            sev[f.get("severity", "?")] = sev.get(f.get("severity", "?"), 0) + 1
        summary["lint"] = {"verdict": {0: "pass", 1: "fail"}.get(lrc, "unusable"), "findings": sev}
    return summary


def summary_argvs(path):
    """The romlab commands :func:`rom_summary` reads."""
    return [["inspect", path], ["lint", path]]


def hostname():
    return socket.gethostname()
