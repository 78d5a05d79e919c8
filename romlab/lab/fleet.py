"""A lab fleet: N `romlab vm` guests as Ansible-managed hosts, each with its own NIC under test,
its own flash chip behind its own programmer, and real SSH on a management NIC of its own.

Per host I (1..N), under the lab's directory:

* a guest (:func:`romlab.lab.vm.start`) with an e1000 whose ROM BAR holds the lab's image, and a
  virtio-net management NIC on QEMU's user networking, SSH forwarded from 127.0.0.1:PORT;
* in the guest, Debian's sshd run as a program (unpacked by set-up into romlab's cache, never
  installed on the host) with a host key and the lab's authorized key, all in the lab's directory;
* on the host, a `romlab serprog-emu` holding ``hostI/chip.bin`` (the NIC's flash chip), reached from
  the guest as ``serprog:tcp=10.0.2.2:PORT`` (QEMU's user network forwards the guest's connections to
  10.0.2.2 to the host's 127.0.0.1). The chip files stay on the host, where a test hashes them.

QEMU's NICs have no in-system flash, so the lab exercises the programmer path. ``/opt`` and
``/var/lib`` are writable in the guests (kept in memory) so that a roll-out can install romlab into
/opt/romlab and keep backups in /var/lib/romlab as on a real server.

``fleet up`` starts a supervisor process of its own session that starts everything, waits until
every guest's sshd answers, writes ``inventory.yml`` and returns; the guests and programmers die with
the supervisor. ``fleet down`` stops it. ``fleet fault`` restarts one host's programmer with faults
(``romlab serprog-emu --fault``) to rehearse a failure.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from hw.errors import LabError, UsageError
from romlab.lab import vm
from romlab.lab.process import launch, stop
from romlab.lab.qemu import NicSpec, cache_dir

STATE = "fleet.json"
BOOT_TIMEOUT = 900.0     # three TCG guests on two busy cores take minutes, not hours
GUEST_MEMORY = "768M"
CHIP = "W25X10"
CHIP_SIZE = 128 * 1024


def sshd_root() -> Path:
    """Where set-up unpacks Debian's openssh-server (and libwrap0, which its sshd links)."""
    return cache_dir() / "openssh"


def nic_mac(i: int) -> str:
    return f"52:54:00:aa:00:{i:02x}"


def mgmt_mac(i: int) -> str:
    return f"52:54:00:fe:00:{i:02x}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    r = subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
                       capture_output=True, text=True)
    if r.returncode:
        raise LabError(f"ssh-keygen failed for {path}: {r.stderr.strip()} (install openssh-client)")


def guest_script(lab: Path, i: int) -> str:
    """What a fleet guest runs: bring the management NIC up, then sshd in the foreground.

    The host has no sshd user (openssh-server is not installed there), so the guest binds a copy
    of /etc/passwd with one over the read-only original (only the guest sees it); likewise a copy of
    /etc/shadow in which root has no password and is not locked (sshd refuses a locked account a key).
    """
    root = sshd_root()
    return f"""#!/bin/sh
set -e
for d in /sys/class/net/*; do
  [ "$(cat "$d/address")" = "{mgmt_mac(i)}" ] && IF=${{d##*/}}
done
[ -n "$IF" ] || {{ echo "romlab fleet: no management NIC {mgmt_mac(i)}" >&2; exit 1; }}
ip link set lo up
ip link set "$IF" up
ip addr add 10.0.2.15/24 dev "$IF"
ip route add default via 10.0.2.2
hostname lab{i}
# root logs in to a home of its own with /bin/sh: the host's root may have shell start-up files
# (pyenv, conda) that cost seconds per command under TCG and mean nothing to Ansible.
mkdir -p -m 700 /run/romlab-root
awk -F: 'BEGIN {{ OFS = ":" }} $1 == "root" {{ $6 = "/run/romlab-root"; $7 = "/bin/sh" }} {{ print }}' /etc/passwd > /run/romlab-passwd
grep -q '^sshd:' /run/romlab-passwd || echo 'sshd:x:65534:65534:sshd privilege separation:/run/sshd:/usr/sbin/nologin' >> /run/romlab-passwd
mount --bind /run/romlab-passwd /etc/passwd
# sshd reads root's shadow entry to tell whether the account is locked, which it refuses even a key:
# the guest's copy says "*" (no password login, not locked) whatever the host's says.
sed 's/^root:[^:]*:/root:*:/' /etc/shadow > /run/romlab-shadow
chmod 600 /run/romlab-shadow
mount --bind /run/romlab-shadow /etc/shadow
mkdir -p /run/sshd && chmod 755 /run/sshd
export LD_LIBRARY_PATH={root}/usr/lib/x86_64-linux-gnu
exec {root}/usr/sbin/sshd -D -e -f {lab}/host{i}/sshd_config
"""


def sshd_config(lab: Path, i: int) -> str:
    return f"""Port 22
ListenAddress 0.0.0.0
HostKey {lab}/host{i}/ssh_host_ed25519_key
AuthorizedKeysFile {lab}/id_ed25519.pub
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
UseDNS no
PidFile none
Subsystem sftp {sshd_root()}/usr/lib/openssh/sftp-server
"""


def inventory(lab: Path, hosts: list[dict]) -> str:
    """The Ansible inventory (YAML) for the lab: every host is 127.0.0.1 on its forwarded port, its
    key checked against the lab's known_hosts, its NIC's flash behind the host's programmer."""
    site = _deps_site()
    lines = ["# Written by `romlab lab fleet up`; `romlab lab fleet down` stops these hosts.",
             "all:", "  vars:",
             "    ansible_host: 127.0.0.1",
             "    ansible_user: root",
             "    ansible_python_interpreter: /usr/bin/python3",
             f"    ansible_ssh_private_key_file: {lab}/id_ed25519",
             f"    ansible_ssh_common_args: -o UserKnownHostsFile={lab}/known_hosts -o StrictHostKeyChecking=yes",
             "    ansible_remote_tmp: /tmp/.ansible-tmp",
             "    # The lab's hosts share the controller's root file system: romlab's dependencies (and the pip",
             "    # that installs it) are the controller's, not an index's (real servers: see docs/fleet.md).",
             f"    romlab_deps_site: {site}",
             f"    romlab_lab_python: {sys.executable}",
             "  children:", "    romlab_lab:", "      hosts:"]
    for h in hosts:
        lines += [f"        {h['name']}:",
                  f"          ansible_port: {h['ssh_port']}",
                  "          romlab_targets:",
                  f"            - mac: \"{h['nic_mac']}\"",
                  f"              programmer: serprog:tcp=10.0.2.2:{h['prog_port']}",
                  "              layout: rom-at-0"]
    return "\n".join(lines) + "\n"


def _deps_site() -> str:
    import sysconfig

    return sysconfig.get_paths()["purelib"]


def read_state(lab: Path) -> dict:
    try:
        return json.loads((lab / STATE).read_text())
    except FileNotFoundError:
        raise LabError(f"no fleet in {lab} (no {STATE}); start one with `romlab lab fleet up`") from None
    except (OSError, ValueError) as exc:
        raise LabError(f"{lab / STATE} is unreadable ({exc}); stop the fleet's processes by hand") from None


def _write_state(lab: Path, state: dict) -> None:
    tmp = lab / (STATE + ".tmp")
    tmp.write_text(json.dumps(state, indent=1) + "\n")
    os.replace(tmp, lab / STATE)


def _alive(pid: int) -> bool:
    """Whether ``pid`` still runs. A process that has exited but is not yet reaped (a zombie: the
    supervisor when the process that started it, a test say, has not waited for it) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2:][:1] != "Z"


def prepare(lab: Path, n: int, rom: str) -> list[dict]:
    """Keys, configs and chips for N hosts; every chip holds ``rom`` at 0, the rest erased."""
    if not 1 <= n <= 16:
        raise UsageError(f"--hosts {n}: a lab fleet has 1 to 16 hosts")
    if not (sshd_root() / "usr" / "sbin" / "sshd").exists():
        raise LabError(f"no sshd under {sshd_root()}; run scripts/setup.sh (it unpacks Debian's openssh-server "
                       "there without installing it)")
    data = Path(rom).read_bytes()
    if len(data) > CHIP_SIZE:
        raise UsageError(f"{rom} is {len(data)} bytes; the lab's chips ({CHIP}) hold {CHIP_SIZE}")
    lab.mkdir(parents=True, exist_ok=True)
    _keygen(lab / "id_ed25519", "romlab-lab-fleet")
    hosts = []
    known = []
    for i in range(1, n + 1):
        d = lab / f"host{i}"
        (d / "guest").mkdir(parents=True, exist_ok=True)
        _keygen(d / "ssh_host_ed25519_key", f"lab{i}")
        (d / "sshd_config").write_text(sshd_config(lab, i))
        (d / "guest.sh").write_text(guest_script(lab, i))
        (d / "chip.bin").write_bytes(data + b"\xff" * (CHIP_SIZE - len(data)))
        h = {"name": f"lab{i}", "index": i, "ssh_port": _free_port(), "prog_port": _free_port(),
             "nic_mac": nic_mac(i), "mgmt_mac": mgmt_mac(i), "chip": str(d / "chip.bin"), "rom": str(rom),
             "faults": []}
        hosts.append(h)
        pub = (d / "ssh_host_ed25519_key.pub").read_text().split()
        known.append(f"[127.0.0.1]:{h['ssh_port']} {pub[0]} {pub[1]}")
    (lab / "known_hosts").write_text("\n".join(known) + "\n")
    return hosts


def up(lab: str, n: int, rom: str, *, timeout: float = BOOT_TIMEOUT, accel: str = "auto") -> dict:
    """Start the fleet's supervisor, wait until every guest's sshd answers; the state written."""
    labp = Path(lab).resolve()
    if (labp / STATE).exists():
        st = read_state(labp)
        if _alive(st.get("supervisor", 0)):
            raise UsageError(f"a fleet is already running from {labp} (pid {st['supervisor']}); "
                             "`romlab lab fleet down` first")
    hosts = prepare(labp, n, rom)
    state = {"lab": str(labp), "hosts": hosts, "accel": accel, "status": "starting", "started": time.time()}
    _write_state(labp, state)
    log = open(labp / "supervisor.log", "ab")
    sup = subprocess.Popen([sys.executable, "-m", "romlab.lab.fleet", "supervise", str(labp)],
                           stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = read_state(labp)
        if st.get("status") == "ready":
            (labp / "inventory.yml").write_text(inventory(labp, st["hosts"]))
            return st
        if st.get("status") == "failed" or sup.poll() is not None:
            sup.wait()
            raise LabError(f"the lab fleet did not come up: {st.get('error', 'its supervisor ended')} "
                           f"(see {labp / 'supervisor.log'} and host*/console.log)")
        time.sleep(0.5)
    _signal(sup.pid, signal.SIGTERM)
    raise LabError(f"the lab fleet's sshds did not all answer within {timeout:.0f} s; stopped it "
                   f"(see {labp}/host*/console.log)")


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def down(lab: str, timeout: float = 60.0) -> dict:
    labp = Path(lab).resolve()
    st = read_state(labp)
    pid = st.get("supervisor")
    if pid and _alive(pid):
        _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            _signal(pid, signal.SIGKILL)   # its guests and programmers die with it (PDEATHSIG)
    st["status"] = "down"
    _write_state(labp, st)
    return st


def fault(lab: str, host: int, faults: list[str], timeout: float = 60.0) -> None:
    """Restart host ``host``'s programmer with ``faults`` (serprog-emu's --fault values; none clears)."""
    from romtools.flash.sim.serprog_server import parse_faults

    parse_faults([f for f in faults if f != "none"], 1)   # a bad value is refused before anything restarts
    labp = Path(lab).resolve()
    st = read_state(labp)
    if st.get("status") != "ready" or not _alive(st.get("supervisor", 0)):
        raise LabError(f"the fleet in {labp} is not running")
    if not 1 <= host <= len(st["hosts"]):
        raise UsageError(f"--host {host}: the fleet has hosts 1 to {len(st['hosts'])}")
    request = {"host": host, "faults": faults, "id": time.time_ns()}
    (labp / "fault-request.json").write_text(json.dumps(request))
    _signal(st["supervisor"], signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if read_state(labp).get("fault_done") == request["id"]:
            return
        time.sleep(0.2)
    raise LabError("the fleet's supervisor did not restart the programmer; see supervisor.log")


# -- the supervisor -------------------------------------------------------------------------

def _start_programmer(h: dict) -> subprocess.Popen:
    """The host's serprog emulator, its output in hostI/programmer.log; returns once it listens."""
    cmd = [sys.executable, "-m", "romlab", "serprog-emu", "--image", h["chip"], "--chip", CHIP,
           "--listen", f"tcp:127.0.0.1:{h['prog_port']}"]
    for f in h["faults"]:
        cmd += ["--fault", f]
    logpath = Path(h["chip"]).with_name("programmer.log")
    with open(logpath, "wb") as log:
        proc = launch(cmd, what="serprog-emu", stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if b"listening" in logpath.read_bytes():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop(proc)
    raise LabError(f"{h['name']}'s programmer did not start (see {logpath})")


def _sshd_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(5)
            return s.recv(8).startswith(b"SSH-")
    except OSError:
        return False


def supervise(lab: str) -> int:
    labp = Path(lab)
    st = read_state(labp)
    st["supervisor"] = os.getpid()
    _write_state(labp, st)
    flags = {"stop": False, "fault": False}
    signal.signal(signal.SIGTERM, lambda *a: flags.update(stop=True))
    signal.signal(signal.SIGINT, lambda *a: flags.update(stop=True))
    signal.signal(signal.SIGHUP, lambda *a: flags.update(fault=True))
    progs: dict[int, subprocess.Popen] = {}
    guests: dict[int, subprocess.Popen] = {}
    consoles = []
    try:
        t0 = time.monotonic()
        for h in st["hosts"]:
            progs[h["index"]] = _start_programmer(h)
        # All guests at once: boots overlap on the cores there are.
        for h in st["hosts"]:
            d = labp / f"host{h['index']}"
            nic = NicSpec.parse(f"e1000,romfile={h['rom']},romsize=131072,mac={h['nic_mac']}")
            console = open(d / "console.log", "wb")
            consoles.append(console)
            ctl = d / "ctl"
            shutil.rmtree(ctl, ignore_errors=True)
            ctl.mkdir()
            guests[h["index"]] = vm.start(["sh", str(d / "guest.sh")], [nic], str(ctl), memory=GUEST_MEMORY,
                                          cpus=1, accel=st.get("accel", "auto"), cwd=str(d / "guest"),
                                          overlays=["/opt", "/var/lib", "/tmp"],
                                          extra=vm.management_args(h["ssh_port"], h["mgmt_mac"]),
                                          stdout=console, stderr=subprocess.STDOUT)
        pending = {h["index"]: h for h in st["hosts"]}
        while pending and not flags["stop"]:
            for i, h in list(pending.items()):
                if guests[i].poll() is not None:
                    raise LabError(f"{h['name']}'s guest ended during boot (see host{i}/console.log)")
                if _sshd_answers(h["ssh_port"]):
                    h["boot_seconds"] = round(time.monotonic() - t0, 1)
                    del pending[i]
            time.sleep(0.5)
        st["boot_seconds"] = round(time.monotonic() - t0, 1)
        st["status"] = "ready"
        _write_state(labp, st)
        while not flags["stop"]:
            if flags["fault"]:
                flags["fault"] = False
                req = json.loads((labp / "fault-request.json").read_text())
                h = st["hosts"][req["host"] - 1]
                h["faults"] = [f for f in req["faults"] if f != "none"]
                stop(progs[h["index"]])
                progs[h["index"]] = _start_programmer(h)
                st["fault_done"] = req["id"]
                _write_state(labp, st)
            for i, g in guests.items():
                if g.poll() is not None and "ended" not in st["hosts"][i - 1]:
                    st["hosts"][i - 1]["ended"] = g.returncode
                    _write_state(labp, st)
            time.sleep(0.3)
        return 0
    except Exception as exc:     # the state file is how `up` hears of it
        st["status"] = "failed"
        st["error"] = str(exc)
        _write_state(labp, st)
        print(f"romlab lab fleet: {exc}", file=sys.stderr)
        return 1
    finally:
        for g in guests.values():
            stop(g, grace=vm.STOP_GRACE)
        for p in progs.values():
            stop(p)
        for c in consoles:
            c.close()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "supervise":
        sys.exit(supervise(sys.argv[2]))
    sys.exit("usage: python -m romlab.lab.fleet supervise LAB_DIR")
