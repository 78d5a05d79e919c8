"""Inside a `romlab vm` guest: run the documented examples the host exported for it.

The host (tests/test_docs_examples.py, ``export_for_guest``) writes SHARE/docs-examples.json and
the fixture files those examples name; the guest program of tests/test_vm.py or
tests/test_flash_vm.py calls :func:`run_all`. Each example runs in a scratch directory of its own
(SHARE/docs/ID) holding its fixtures, with the page's 03:00.0 replaced by the guest NIC that
stands for it, through ``romlab.cli.main`` in this process: the code ``romlab`` runs, without the
15-25 s a fresh Python costs under TCG over 9p. As root, so a page's ``sudo`` is already there.
Before each, the NIC is put where the page says it is (vfio-pci for `nic` and `vfio unbind`,
its own kernel driver otherwise); for `nic recv` another NIC on the same link sends romlab test
frames until it returns. What each printed and its exit status go to SHARE/docs-results.json;
the host decides.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import socket
import subprocess
import threading
import time
import traceback
from pathlib import Path


def _main(argv: list[str]) -> tuple[int, str, str]:
    from romlab.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(argv)
        except SystemExit as exc:   # argparse's usage errors
            rc = exc.code
    return rc, out.getvalue(), err.getvalue()


def _driver(bdf: str) -> str | None:
    link = f"/sys/bus/pci/devices/{bdf}/driver"
    return os.path.basename(os.readlink(link)) if os.path.islink(link) else None


def _put(bdf: str, want: str) -> None:
    """The NIC on vfio-pci (``want`` = "vfio-pci") or back on its kernel driver ("kernel")."""
    now = _driver(bdf)
    if want == "vfio-pci" and now != "vfio-pci":
        rc, _, err = _main(["vfio", "bind", bdf])
    elif want == "kernel" and now == "vfio-pci":
        rc, _, err = _main(["vfio", "unbind", bdf])
    else:
        return
    if rc != 0:
        raise RuntimeError(f"could not put {bdf} on {want}: {err.strip()}")


class Peer:
    """The kernel's driver of another NIC on the link sends romlab test frames (seed 1, the
    `nic recv` default), numbered on and on, broadcast, until stopped."""

    def __init__(self, bdf: str, size: int = 1514):
        from drivers import frames

        self.ifname = os.listdir(f"/sys/bus/pci/devices/{bdf}/net")[0]
        with open(f"/proc/sys/net/ipv6/conf/{self.ifname}/disable_ipv6", "w") as f:
            f.write("1")      # no neighbour discovery beside the test frames
        subprocess.run(["ip", "link", "set", self.ifname, "up"], check=True, capture_output=True)
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
        self.sock.bind((self.ifname, frames.ETHERTYPE))
        src = bytes.fromhex(Path(f"/sys/class/net/{self.ifname}/address").read_text().strip().replace(":", ""))
        self.make = lambda seq: frames.frame(src, frames.BROADCAST, 1, seq, size)
        self.sent = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._send, daemon=True)

    def _send(self) -> None:
        while not self.stop.is_set():
            try:
                self.sock.send(self.make(self.sent & 0xFFFFFFFF))
                self.sent += 1
            except OSError:     # the transmit queue is full for a moment
                time.sleep(0.001)
            if self.sent % 8 == 0:
                time.sleep(0.001)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)
        self.sock.close()
        subprocess.run(["ip", "link", "set", self.ifname, "down"], capture_output=True)


def run_all(share: str, bdf: dict, peer: dict | None = None, progress=print) -> list[dict]:
    """Run SHARE/docs-examples.json's examples; ``bdf`` maps a role to the guest's BDF, ``peer``
    a role to the BDF of the NIC on the same link that sends to it."""
    s = Path(share)
    todo = json.loads((s / "docs-examples.json").read_text())
    results = []
    here = os.getcwd()
    # A HOME of its own, as on the host: the guest's own is on the read-only root file system.
    home = s / "docs-home"
    home.mkdir(exist_ok=True)
    saved = {k: os.environ.pop(k, None) for k in ("HOME", "ROMLAB_BACKUP_DIR", "XDG_DATA_HOME")}
    os.environ["HOME"] = str(home)
    for ex in todo:
        work = s / "docs" / re.sub(r"[^A-Za-z0-9]+", "_", ex["id"])
        work.mkdir(parents=True, exist_ok=True)
        rec: dict = {"id": ex["id"], "work": str(work)}
        results.append(rec)
        try:
            for name in ex["fixtures"]:
                shutil.copyfile(s / "docs-fixtures" / name, work / name)
            dev = bdf[ex["role"]] if ex["role"] else None
            if dev:
                _put(dev, ex["driver"])
            argv = [dev[5:] if a == "{bdf}" else a for a in ex["argv"]]
            rec["argv"] = argv
            progress(f"docs example {ex['id']}: romlab {' '.join(argv)}")
            os.chdir(work)
            t0 = time.monotonic()
            try:
                if ex["peer"]:
                    with Peer(peer[ex["role"]]) as p:
                        rec["rc"], rec["stdout"], rec["stderr"] = _main(argv)
                    rec["peer_sent"] = p.sent
                else:
                    rec["rc"], rec["stdout"], rec["stderr"] = _main(argv)
            finally:
                os.chdir(here)
            rec["seconds"] = round(time.monotonic() - t0, 2)
            progress(f"  rc={rec['rc']} {rec['seconds']} s {rec['stderr'].strip()[-200:]}")
        except Exception:
            rec["exception"] = traceback.format_exc()
            progress(rec["exception"])
    for k, v in saved.items():
        os.environ.pop(k, None)
        if v is not None:
            os.environ[k] = v
    for dev in {bdf[ex["role"]] for ex in todo if ex["role"]}:   # every NIC back on its own driver
        try:
            _put(dev, "kernel")
        except Exception:
            results.append({"id": "(cleanup)", "exception": traceback.format_exc()})
    (s / "docs-results.json").write_text(json.dumps(results, indent=1))
    return results
