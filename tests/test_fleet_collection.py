"""The romlab.fleet collection without guests: its shared code on a fake sysfs, its checks
(ansible-test's validate-modules, ansible-lint, ansible-doc), `romlab flash --backup`, the restore's
refusal of another host's backup, and the lab fleet's inventory.

The end-to-end runs over SSH are in tests/test_fleet_vm.py.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import IPXE_QEMU, REPO, run_romlab

COLLECTION = REPO / "ansible_collections" / "romlab" / "fleet"
BIN = Path(sys.executable).parent
A = (IPXE_QEMU / "pxe-e1000.rom").read_bytes()


@pytest.fixture(scope="module")
def fleet_utils():
    sys.path.insert(0, str(REPO))
    try:
        from ansible_collections.romlab.fleet.plugins.module_utils import fleet
    finally:
        sys.path.remove(str(REPO))
    return fleet


def _env():
    # Only the collections path: not a copy that happens to be importable from Python's sys.path.
    return dict(os.environ, PATH=f"{BIN}:{os.environ.get('PATH', '')}", ANSIBLE_COLLECTIONS_PATH=str(REPO),
                ANSIBLE_NOCOLOR="1", ANSIBLE_COLLECTIONS_SCAN_SYS_PATH="false")


# -- shared code -----------------------------------------------------------------------------

def test_addresses_are_normalised_and_refused(fleet_utils):
    assert fleet_utils.normalize_bdf("03:00.0") == "0000:03:00.0"
    assert fleet_utils.normalize_bdf("0000:3B:00.1") == "0000:3b:00.1"
    assert fleet_utils.normalize_mac("52-54-00-AA-00-01") == "52:54:00:aa:00:01"
    assert fleet_utils.normalize_ids("8086:100E") == "8086:100e"
    for bad, fn in (("3:00.0", fleet_utils.normalize_bdf), ("0000:03:00.8", fleet_utils.normalize_bdf),
                    ("52:54:00:aa:00", fleet_utils.normalize_mac), ("8086-100e", fleet_utils.normalize_ids)):
        with pytest.raises(ValueError):
            fn(bad)


NICS = [
    {"bdf": "0000:01:00.0", "id": "8086:100e", "interfaces": [{"name": "enp1s0", "mac": "52:54:00:aa:00:01"}]},
    {"bdf": "0000:02:00.0", "id": "8086:10d3", "interfaces": [{"name": "enp2s0", "mac": "52:54:00:aa:00:02"}]},
    {"bdf": "0000:00:0b.0", "id": "1af4:1000", "interfaces": [{"name": "enp0s11", "mac": "52:54:00:fe:00:01"}]},
]


def test_selection_by_bdf_ids_or_mac(fleet_utils):
    def pick(sel):
        return [n["bdf"] for n in NICS if fleet_utils.selected(n, sel)]

    assert pick({}) == [n["bdf"] for n in NICS]
    assert pick({"bdf": ["02:00.0"]}) == ["0000:02:00.0"]
    assert pick({"ids": ["8086:100E"]}) == ["0000:01:00.0"]
    assert pick({"mac": ["52:54:00:FE:00:01"]}) == ["0000:00:0b.0"]
    assert pick({"ids": ["8086:10d3"], "mac": ["52:54:00:aa:00:01"]}) == ["0000:01:00.0", "0000:02:00.0"]
    assert pick({"bdf": ["0000:09:00.0"]}) == []


def test_targets_by_bdf_or_mac_else_in_system(fleet_utils):
    targets = [{"mac": "52:54:00:AA:00:01", "programmer": "serprog:tcp=10.0.2.2:4242", "layout": "rom-at-0"},
               {"bdf": "02:00.0", "layout": "i210"}]
    assert fleet_utils.target_of(NICS[0], targets) == (
        ["--programmer", "serprog:tcp=10.0.2.2:4242"], ["--layout", "rom-at-0"], "serprog:tcp=10.0.2.2:4242")
    assert fleet_utils.target_of(NICS[1], targets) == (
        ["--pci", "0000:02:00.0", "--unbind"], ["--layout", "i210"], "pci:0000:02:00.0")
    assert fleet_utils.target_of(NICS[2], targets) == (["--pci", "0000:00:0b.0", "--unbind"], [], "pci:0000:00:0b.0")


def _fake_sysfs(tmp_path):
    """/sys/class/net as the kernel lays it out: a PCI NIC's device link points at the function,
    a virtio NIC's at the virtio device below its PCI function."""
    pci = tmp_path / "devices" / "pci0000:00"
    (pci / "0000:00:0b.0" / "virtio0").mkdir(parents=True)
    (pci / "0000:00:1c.0" / "0000:01:00.0").mkdir(parents=True)
    net = tmp_path / "class" / "net"
    for name, dev, mac in (("enp0s11", pci / "0000:00:0b.0" / "virtio0", "52:54:00:fe:00:01"),
                           ("enp1s0", pci / "0000:00:1c.0" / "0000:01:00.0", "52:54:00:aa:00:01"),
                           ("lo", None, "00:00:00:00:00:00")):
        (net / name).mkdir(parents=True)
        (net / name / "address").write_text(mac + "\n")
        if dev:
            (net / name / "device").symlink_to(dev)
    return str(net)


def test_interfaces_and_the_management_nic(fleet_utils, tmp_path):
    net = _fake_sysfs(tmp_path)
    assert fleet_utils.pci_of_interface("enp0s11", net) == "0000:00:0b.0"
    assert fleet_utils.pci_of_interface("enp1s0", net) == "0000:01:00.0"
    assert fleet_utils.pci_of_interface("lo", net) is None
    assert fleet_utils.interfaces("0000:01:00.0", sys_net=net) == [{"name": "enp1s0", "mac": "52:54:00:aa:00:01"}]
    ip = _fake_ip({"enp0s11": ["10.0.2.15"], "enp1s0": []}, via="enp0s11")
    env = {"SSH_CONNECTION": "10.0.2.2 50514 10.0.2.15 22"}
    pci = str(tmp_path / "devices" / "pci0000:00")
    assert fleet_utils.management_bdfs(environ=env, ip=ip, sys_net=net, sys_pci=pci) == {"0000:00:0b.0"}
    # Not over SSH (a local run): only the NICs named.
    assert fleet_utils.management_bdfs(["01:00.0"], environ={}, ip=ip, sys_net=net) == {"0000:01:00.0"}


def _fake_ip(addrs, via):
    """`ip -j addr` and `ip -j route get` as iproute2 prints them (the fields the code reads)."""
    def ip(args):
        if args[0] == "addr":
            return [{"ifname": n, "addr_info": [{"local": a} for a in v]} for n, v in addrs.items()]
        assert args[:2] == ["route", "get"]
        return [{"dst": args[2], "dev": via, "prefsrc": "x"}]
    return ip


def test_management_nic_behind_bond_bridge_or_vlan_and_its_whole_card(fleet_utils, tmp_path):
    """br0 (the server address) over bond0 over enp1s0f0 of a two-port card at 01:00; the route back
    to the client leaves by vlan10 over enp2s0. Every function of both cards is management."""
    pci = tmp_path / "devices" / "pci0000:00"
    for bdf in ("0000:01:00.0", "0000:01:00.1", "0000:02:00.0", "0000:03:00.0"):
        (pci / bdf).mkdir(parents=True)
    net = tmp_path / "class" / "net"
    for name, dev in (("enp1s0f0", "0000:01:00.0"), ("enp1s0f1", "0000:01:00.1"), ("enp2s0", "0000:02:00.0"),
                      ("enp3s0", "0000:03:00.0"), ("bond0", None), ("br0", None), ("vlan10", None), ("lo", None)):
        (net / name).mkdir(parents=True)
        if dev:
            (net / name / "device").symlink_to(pci / dev)
    (net / "bond0" / "lower_enp1s0f0").symlink_to(net / "enp1s0f0")
    (net / "br0" / "brif").mkdir()
    (net / "br0" / "brif" / "bond0").symlink_to(net / "bond0")
    (net / "vlan10" / "lower_enp2s0").symlink_to(net / "enp2s0")
    ip = _fake_ip({"lo": ["127.0.0.1"], "br0": ["192.0.2.10"], "enp3s0": []}, via="vlan10")
    conn = "192.0.2.99 50514 192.0.2.10 22"
    got = fleet_utils.management_bdfs(ssh_connection=conn, environ={}, ip=ip, sys_net=str(net), sys_pci=str(pci))
    assert got == {"0000:01:00.0", "0000:01:00.1", "0000:02:00.0"}
    # The module's environment under become has no SSH_CONNECTION; the one the action plugin read counts.
    assert fleet_utils.management_bdfs(ssh_connection=conn, environ={"SSH_CONNECTION": ""}, ip=ip,
                                       sys_net=str(net), sys_pci=str(pci)) == got

    # Fails closed: ip failing, or an interface that leads to no PCI function, is a refusal ...
    def broken(args):
        raise fleet_utils.ManagementUnknown("`ip -j %s` could not be run or read (no such file)" % " ".join(args))
    lo_only = _fake_ip({"lo": ["192.0.2.10"]}, via="lo")
    for bad_ip in (broken, lo_only):
        with pytest.raises(fleet_utils.ManagementUnknown, match="management_nics"):
            fleet_utils.management_bdfs(ssh_connection=conn, environ={}, ip=bad_ip, sys_net=str(net),
                                        sys_pci=str(pci))
        # ... unless the operator names the management NICs.
        assert fleet_utils.management_bdfs(["03:00.0"], ssh_connection=conn, environ={}, ip=bad_ip,
                                           sys_net=str(net), sys_pci=str(pci)) == {"0000:03:00.0"}
    # The real `ip` when it is not there: a refusal too, not an empty set.
    with pytest.raises(fleet_utils.ManagementUnknown):
        import unittest.mock
        with unittest.mock.patch.dict(os.environ, {"PATH": str(tmp_path / "nothing")}):
            fleet_utils.management_bdfs(ssh_connection=conn, environ={}, sys_net=str(net), sys_pci=str(pci))


def test_run_romlab_passes_romlabs_one_line_error(fleet_utils, tmp_path):
    romlab = BIN / "romlab"
    with pytest.raises(fleet_utils.RomlabFailed) as exc:
        fleet_utils.run_romlab(str(romlab), ["inspect", str(tmp_path / "missing.rom")])
    assert "missing.rom" in str(exc.value) and "Traceback" not in str(exc.value)
    assert exc.value.rc not in (0, None)
    with pytest.raises(fleet_utils.RomlabFailed, match="cannot run"):
        fleet_utils.run_romlab(str(tmp_path / "no-romlab"), ["list"])


def test_rom_summary_against_the_rom_itself(fleet_utils):
    s = fleet_utils.rom_summary(str(BIN / "romlab"), str(IPXE_QEMU / "pxe-e1000.rom"))
    assert s["sha256"] == hashlib.sha256(A).hexdigest() and s["size"] == len(A)
    (im,) = s["images"]
    pcir = struct.unpack_from("<H", A, 0x18)[0]                # PCI firmware spec: PCIR pointer at 0x18
    vendor, device = struct.unpack_from("<HH", A, pcir + 4)
    assert im["id"] == f"{vendor:04x}:{device:04x}" == "8086:100e"
    at = struct.unpack_from("<H", A, 0x10)[0]    # iPXE's romprefix.S: its header's offset at 0x10
    assert A[at:at + 4] == b"iPXE"               # "iPXE", length, checksum, shrunk length, 0, build ID
    assert im["ipxe_build_id"] == "%08x" % struct.unpack_from("<I", A, at + 8)[0]
    pnp = struct.unpack_from("<H", A, 0x1a)[0]                 # PnP BIOS spec: $PnP header offset at 0x1a,
    assert A[pnp:pnp + 4] == b"$PnP"
    product = struct.unpack_from("<H", A, pnp + 0x10)[0]       # its product name pointer at +0x10
    assert im["product"] == A[product:A.index(b"\0", product)].decode()
    assert set(im["checksums"].values()) == {"valid"}
    assert s["lint"]["verdict"] == "pass"


# -- romlab flash --backup -------------------------------------------------------------------

def test_flash_backup_is_a_backup_restore_takes(tmp_path):
    chip = tmp_path / "chip.bin"
    image = A + b"\xff" * (128 * 1024 - len(A))
    chip.write_bytes(image)
    env = dict(os.environ, ROMLAB_BACKUP_DIR=str(tmp_path / "backups"))
    r = run_romlab("flash", "--programmer", f"file:{chip}", "--backup", "--json", env=env)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    backup = Path(doc["backup"])
    assert backup.read_bytes() == image and doc["sha256"] == hashlib.sha256(image).hexdigest()
    record = json.loads(backup.with_suffix(".json").read_text())
    assert record["sha256"] == doc["sha256"] and record["size"] == len(image)
    assert record["pci_ids_in_backup"] == "8086:100e"
    assert chip.read_bytes() == image                            # nothing written
    chip.write_bytes(b"\xff" * len(image))
    r = run_romlab("restore", str(backup), "--programmer", f"file:{chip}", "--json", env=env)
    assert r.returncode == 0, r.stderr
    assert chip.read_bytes() == image
    r = run_romlab("flash", "--programmer", f"file:{chip}", "--backup", str(IPXE_QEMU / "pxe-e1000.rom"), env=env)
    assert r.returncode == 2 and "--backup takes no ROM" in r.stderr.decode()


# -- the collection's checks -----------------------------------------------------------------

def test_ansible_doc_shows_the_flash_module():
    r = subprocess.run([str(BIN / "ansible-doc"), "romlab.fleet.romlab_flash"], capture_output=True, text=True,
                       env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    for option in ("roms", "select", "targets", "backup_dir", "management_nics"):
        assert re.search(rf"^\s*(- )?{option}\b", r.stdout, re.M), option
    assert "check_mode" in r.stdout and "diff_mode" in r.stdout


def _seed_pip_bootstrap(tmp_path):
    """ansible-test bootstraps pip into its venvs with a script from ci-files.testing.ansible.com.
    On a machine that reaches only a package index, put a stand-in in its cache: pip itself, run
    from the wheel of the version ansible-test asks for (fetched with pip from the index)."""
    import ansible_test._internal.python_requirements as pr

    version = re.search(r"pip='([\d.]+)'", Path(pr.__file__).read_text()).group(1)
    cache = Path.home() / ".ansible" / "test" / "cache"
    script = cache / f"get_pip_{version.replace('.', '_')}.py"
    if script.exists():
        return
    try:
        import urllib.request
        urllib.request.urlopen(f"https://ci-files.testing.ansible.com/ansible-test/get-pip-{version}.py",
                               timeout=10).close()
        return                                   # reachable: ansible-test fetches the real one
    except OSError:
        pass
    cache.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(cache),
                        f"pip=={version}"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wheel = next(cache.glob(f"pip-{version}-*.whl"))
    script.write_text(
        "# Stand-in for get-pip.py: pip run from its wheel.\nimport sys\n"
        f"sys.path.insert(0, {str(wheel)!r})\nfrom pip._internal.cli.main import main\n"
        "sys.exit(main(['install'] + [a for a in sys.argv[1:] if a not in ('--no-setuptools', '--no-wheel')]))\n")


def test_ansible_test_validate_modules(tmp_path):
    _seed_pip_bootstrap(tmp_path)
    py = f"{sys.version_info.major}.{sys.version_info.minor}"
    r = subprocess.run([str(BIN / "ansible-test"), "sanity", "--test", "validate-modules", "--python", py],
                       cwd=COLLECTION, capture_output=True, text=True, env=_env(), timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]


def test_ansible_lint_passes_without_a_skip_list():
    assert not any((REPO / f).exists() for f in (".ansible-lint", ".config/ansible-lint.yml"))
    r = subprocess.run([str(BIN / "ansible-lint"), "--offline", "--nocolor", "ansible", str(COLLECTION)],
                       cwd=REPO, capture_output=True, text=True, env=_env(), timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-4000:]
    assert "0 failure(s), 0 warning(s)" in r.stdout + r.stderr


# -- the restore's owner check, on the controller --------------------------------------------

def test_restore_refuses_another_hosts_backup(tmp_path):
    d = tmp_path / "backups" / "lab2" / "0000-01-00.0"
    d.mkdir(parents=True)
    image = A + b"\xff" * (128 * 1024 - len(A))
    (d / "b.bin").write_bytes(image)
    (d / "b.json").write_text(json.dumps({"chip": "W25X10", "jedec": "ef3011", "size": len(image),
                                          "sha256": hashlib.sha256(image).hexdigest()}))
    (d / "b.fleet.json").write_text(json.dumps({"host": "lab2", "bdf": "0000:01:00.0"}))
    play = tmp_path / "play.yml"
    play.write_text(f"""- hosts: lab3
  gather_facts: false
  tasks:
    - romlab.fleet.romlab_restore:
        bdf: "01:00.0"
        backup: {d / 'b.bin'}
""")
    r = subprocess.run([str(BIN / "ansible-playbook"), "-i", "lab3,", "-c", "local", str(play)],
                       capture_output=True, text=True, env=_env(), timeout=300)
    assert r.returncode != 0
    assert "was taken from lab2 0000:01:00.0, not lab3 0000:01:00.0" in r.stdout


# -- the lab fleet's inventory ---------------------------------------------------------------

def test_lab_inventory_is_what_ansible_reads(tmp_path):
    from romlab.lab import fleet

    hosts = [{"name": f"lab{i}", "ssh_port": 40000 + i, "prog_port": 41000 + i, "nic_mac": fleet.nic_mac(i)}
             for i in (1, 2)]
    inv = tmp_path / "inventory.yml"
    inv.write_text(fleet.inventory(tmp_path, hosts))
    r = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(inv), "--list"], capture_output=True,
                       text=True, env=_env(), timeout=300)
    assert r.returncode == 0, r.stderr
    hv = json.loads(r.stdout)["_meta"]["hostvars"]
    assert hv["lab2"]["ansible_port"] == 40002 and hv["lab2"]["ansible_host"] == "127.0.0.1"
    assert hv["lab2"]["romlab_targets"] == [{"mac": "52:54:00:aa:00:02", "programmer": "serprog:tcp=10.0.2.2:41002",
                                             "layout": "rom-at-0"}]
    assert f"UserKnownHostsFile={tmp_path}/known_hosts" in hv["lab1"]["ansible_ssh_common_args"]


def test_run_many_keeps_each_commands_status_and_message(fleet_utils, tmp_path):
    res = fleet_utils.run_many(str(BIN / "romlab"), [["inspect", str(IPXE_QEMU / "pxe-e1000.rom")],
                                                     ["inspect", str(tmp_path / "missing.rom")],
                                                     ["lint", str(IPXE_QEMU / "pxe-e1000.rom")]])
    (rc0, doc0, _), (rc1, doc1, err1), (rc2, doc2, _) = res
    assert rc0 == 0 and doc0["schema"].startswith("romlab.inspect/")
    assert rc1 == 2 and doc1 is None and "missing.rom" in err1 and "\n" not in err1
    assert rc2 == 0 and doc2["schema"].startswith("romlab.lint/")


def test_lab_verb_refuses_bad_use_in_one_line(tmp_path):
    r = run_romlab("lab", "fleet", "fault", "--dir", str(tmp_path))
    assert r.returncode == 2 and r.stderr.decode().count("\n") == 1 and "--host" in r.stderr.decode()
    r = run_romlab("lab", "fleet", "status", "--dir", str(tmp_path))
    assert r.returncode == 2 and "no fleet in" in r.stderr.decode() and r.stderr.decode().count("\n") == 1
    r = run_romlab("lab", "fleet", "up", "--hosts", "0", "--dir", str(tmp_path / "lab"))
    assert r.returncode == 2 and "1 to 16 hosts" in r.stderr.decode()
    assert not (tmp_path / "lab").exists()


def test_collection_builds_and_installs_with_ansible_galaxy(tmp_path):
    galaxy = str(BIN / "ansible-galaxy")
    # Not the repository's copy: neither through the collections path nor through PYTHONPATH.
    env = dict(_env(), ANSIBLE_COLLECTIONS_PATH=str(tmp_path / "installed"))
    env.pop("PYTHONPATH", None)
    r = subprocess.run([galaxy, "collection", "build", str(COLLECTION), "--output-path", str(tmp_path / "dist")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    (tarball,) = (tmp_path / "dist").glob("romlab-fleet-*.tar.gz")
    # --force: the checkout's own ansible_collections is on sys.path (romlab is installed editable), and
    # ansible-galaxy would otherwise call the collection installed already and copy nothing.
    r = subprocess.run([galaxy, "collection", "install", "--force", str(tarball), "-p", str(tmp_path / "installed")],
                       capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    plugins = tmp_path / "installed" / "ansible_collections" / "romlab" / "fleet" / "plugins"
    assert {p.name for p in (plugins / "modules").glob("*.py")} == {"romlab_facts.py", "romlab_flash.py",
                                                                   "romlab_restore.py"}
    assert {p.name for p in (plugins / "action").glob("*.py")} == {"romlab_flash.py", "romlab_restore.py"}


def test_an_exited_unreaped_supervisor_counts_as_gone():
    """`lab fleet down` waits for the supervisor to go; one started by this process and exited but
    not yet waited for (a zombie) must not keep it waiting out its timeout."""
    import sys
    import time

    from romlab.lab.fleet import _alive

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 60
        while Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.01)
        assert not _alive(p.pid)
    finally:
        p.wait()
    assert _alive(os.getpid())

# -- a chip with an unfinished write (C1) ----------------------------------------------------

def _fleet_module(name):
    sys.path.insert(0, str(REPO))
    try:
        import importlib
        return importlib.import_module(f"ansible_collections.romlab.fleet.plugins.{name}")
    finally:
        sys.path.remove(str(REPO))


def test_backup_and_dry_run_refuse_a_half_written_chip_and_name_its_original(tmp_path, backups):
    from test_flash_journal import _interrupted
    from test_serprog_emu import emulator

    chip, original, _ = _interrupted(tmp_path, backups)
    (first,) = backups.glob("*.bin")
    assert first.read_bytes() == original                        # the backup taken before the cut write
    half = chip.read_bytes()
    assert half != original
    with emulator(chip) as emu:
        for argv in (["--backup"], [str(IPXE_QEMU / "pxe-e1000.rom"), "--layout", "rom-at-0", "--dry-run"]):
            r = run_romlab("flash", "--programmer", emu.spec, *argv, "--json")
            err = r.stderr.decode()
            assert r.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
            assert str(first) in err and f"romlab restore {first}" in err and "--resume" in err
            assert r.stdout == b""
            # The module reads the original backup out of that line for its failure report.
            flash_mod = _fleet_module("modules.romlab_flash")
            assert flash_mod.PENDING_RE.search(err).group(1) == str(first)
    assert list(backups.glob("*.bin")) == [first]               # the half-written chip was not saved as a backup
    assert chip.read_bytes() == half


def test_restore_default_is_the_oldest_backup_since_the_last_completed_write(tmp_path):
    default_backup = _fleet_module("action.romlab_restore").default_backup
    d = tmp_path / "lab2" / "0000-01-00.0"
    assert default_backup(str(d)) is None
    d.mkdir(parents=True)

    def backup(name, completed):
        (d / f"{name}.bin").write_bytes(b"x")
        (d / f"{name}.fleet.json").write_text(json.dumps({"host": "lab2", "write_completed": completed}))
        return str(d / f"{name}.bin")

    # Names begin with the UTC time of the backup, so they sort in the order they were taken.
    a = backup("20261101T000000Z-ef3011", False)
    b = backup("20261102T000000Z-ef3011", False)
    assert default_backup(str(d)) == a                          # no write completed: the first one
    (d / "20261101T000000Z-ef3011.fleet.json").write_text(json.dumps({"host": "lab2", "write_completed": True}))
    assert default_backup(str(d)) == b                          # what the chip held before the failed write
    backup("20261103T000000Z-ef3011", False)                     # the re-run backed up the half-written chip
    assert default_backup(str(d)) == b
    c = backup("20261104T000000Z-ef3011", True)
    assert default_backup(str(d)) == c                          # the last write completed: undo that one


# -- check mode never unbinds (C3) -----------------------------------------------------------

FAKE_ROMLAB = r'''#!{python}
import json, sys
argv = sys.argv[1:]
with open({log!r}, "a") as fh:
    fh.write(json.dumps(argv) + "\n")
if "list" in argv:
    print(json.dumps({{"devices": [{{"bdf": "0000:03:00.0", "id": "8086:10d3", "class": "020000"}}]}}))
elif "--dry-run" in argv:
    print(json.dumps({{"dry_run": True, "changes": "unknown",
                      "reason": "unknown without unbinding: the e1000e driver holds BAR 0"}}))
else:
    sys.stderr.write("romlab: error: this stand-in only lists and plans\n")
    sys.exit(2)
'''


def _fake_romlab(tmp_path):
    """FAKE_ROMLAB as an executable in ``tmp_path``, and the log it writes each argv to."""
    log = tmp_path / "argv.log"
    fake = tmp_path / "romlab"
    fake.write_text(FAKE_ROMLAB.format(python=sys.executable, log=str(log)))
    fake.chmod(0o755)
    return fake, log


def _playbook(play, env, *options):
    """``play`` against host lab1 over the local connection, with this Python on the host side."""
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "lab1,", "-c", "local", *options, str(play),
                           "-e", f"ansible_python_interpreter={sys.executable}"],
                          capture_output=True, text=True, env=env, timeout=300)


def test_check_mode_reports_unknown_and_never_asks_romlab_to_unbind(tmp_path):
    fake, log = _fake_romlab(tmp_path)
    rom = tmp_path / "new.rom"
    rom.write_bytes(A)
    play = tmp_path / "play.yml"
    play.write_text(f"""- hosts: lab1
  gather_facts: false
  tasks:
    - romlab.fleet.romlab_flash:
        romlab: {fake}
        roms: {{"8086:10d3": {rom}}}
        backup_dir: {tmp_path / 'backups'}
      register: out
    - ansible.builtin.debug:
        var: out
""")
    env = dict(_env(), ROMLAB_BACKUP_DIR=str(tmp_path / "remote"))
    env.pop("SSH_CONNECTION", None)
    r = _playbook(play, env, "--check")
    assert r.returncode == 0, r.stdout + r.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    flashes = [c for c in calls if "flash" in c]
    assert flashes and all("--dry-run" in c for c in flashes)
    assert not any(set(c) & {"--backup", "--read", "--verify-only"} for c in flashes)
    assert "changed=0" in r.stdout and "unknown without unbinding" in r.stdout
    assert '"would_change": "unknown"' in r.stdout


# -- the controller's backup checked before the write (H1) -----------------------------------

def test_expect_sha256_is_checked_before_anything_is_written(tmp_path, backups):
    chip = tmp_path / "chip.bin"
    image = b"\xff" * (128 * 1024)
    chip.write_bytes(image)
    rom = str(IPXE_QEMU / "pxe-e1000.rom")
    other = hashlib.sha256(b"what the controller's backup held").hexdigest()
    r = run_romlab("flash", "--programmer", f"file:{chip}", "--layout", "rom-at-0", rom, "--expect-sha256", other)
    err = r.stderr.decode()
    assert r.returncode == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert other in err and hashlib.sha256(image).hexdigest() in err and "nothing was written" in err
    assert chip.read_bytes() == image and not list(backups.glob("*"))      # no write, no backup, no journal
    r = run_romlab("flash", "--programmer", f"file:{chip}", "--layout", "rom-at-0", rom, "--expect-sha256", "12ab")
    assert r.returncode == 2 and "64 hex digits" in r.stderr.decode() and chip.read_bytes() == image
    good = hashlib.sha256(image).hexdigest().upper()
    r = run_romlab("flash", "--programmer", f"file:{chip}", "--layout", "rom-at-0", rom, "--expect-sha256", good)
    assert r.returncode == 0, r.stderr
    assert chip.read_bytes() == A + b"\xff" * (len(image) - len(A))


def test_flash_and_restore_refuse_over_ssh_when_the_management_nic_is_unknown(tmp_path):
    """`ip` failing on the host: over SSH both modules refuse, naming management_nics."""
    fake, log = _fake_romlab(tmp_path)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ip").write_text("#!/bin/sh\necho 'Cannot open netlink socket: Permission denied' >&2\nexit 2\n")
    (bindir / "ip").chmod(0o755)
    rom = tmp_path / "new.rom"
    rom.write_bytes(A)
    d = tmp_path / "backups" / "lab1" / "0000-03-00.0"
    d.mkdir(parents=True)
    (d / "b.bin").write_bytes(b"\xff" * 4096)
    (d / "b.json").write_text("{}")
    (d / "b.fleet.json").write_text(json.dumps({"host": "lab1", "bdf": "0000:03:00.0"}))
    play = tmp_path / "play.yml"
    play.write_text(f"""- hosts: lab1
  gather_facts: false
  tasks:
    - romlab.fleet.romlab_flash:
        romlab: {fake}
        roms: {{"8086:10d3": {rom}}}
        backup_dir: {tmp_path / 'backups'}
      ignore_errors: true
    - romlab.fleet.romlab_restore:
        romlab: {fake}
        bdf: "03:00.0"
        backup_dir: {tmp_path / 'backups'}
""")
    env = dict(_env(), SSH_CONNECTION="192.0.2.99 50514 192.0.2.10 22", PATH=f"{bindir}:{_env()['PATH']}")
    r = _playbook(play, env)
    assert r.returncode != 0
    flash_task, restore_task = r.stdout.split("TASK [")[1:3]
    for task in (flash_task, restore_task):
        assert "refusing to flash without knowing which NIC carries the management connection" in task, task
    assert "Cannot open netlink socket" in r.stdout and "ignored=1" in r.stdout
    assert not log.exists()                     # refused before romlab was run at all


# -- bad targets are one-line failures (M1) --------------------------------------------------

def test_bad_targets_fail_in_one_line_before_any_nic_is_touched(tmp_path):
    flash_mod = _fleet_module("modules.romlab_flash")

    class Failed(Exception):
        pass

    class Module:
        def fail_json(self, msg, **kw):
            raise Failed(msg)

    base = {"romlab": str(tmp_path / "never-run"), "roms": {"8086:100e": "a.rom"}, "select": {},
            "management_nics": [], "ssh_connection": None}
    for target, said in (({"mac": "52:54:00:aa:00", "programmer": "ch341a"}, "is not a MAC address"),
                         ({"bdf": "3:00.0", "programmer": "ch341a"}, "is not a PCI address"),
                         ({"programmer": "ch341a"}, "needs bdf or mac")):
        with pytest.raises(Failed) as exc:
            flash_mod.choose(Module(), dict(base, targets=[target]))
        assert said in str(exc.value) and "\n" not in str(exc.value)

    # Through Ansible: the argument spec itself wants bdf or mac in every entry of targets.
    play = tmp_path / "play.yml"
    play.write_text(f"""- hosts: lab1
  gather_facts: false
  tasks:
    - romlab.fleet.romlab_flash:
        romlab: {tmp_path / 'never-run'}
        roms: {{"8086:100e": {IPXE_QEMU / 'pxe-e1000.rom'}}}
        targets: [{{programmer: ch341a}}]
        backup_dir: {tmp_path / 'backups'}
""")
    env = dict(_env())
    env.pop("SSH_CONNECTION", None)
    r = _playbook(play, env)
    assert r.returncode != 0 and "one of the following is required: bdf, mac" in r.stdout, r.stdout
    assert "Traceback" not in r.stdout + r.stderr


def test_rom_summary_of_an_unreadable_file_is_an_error_entry(fleet_utils, tmp_path):
    s = fleet_utils.rom_summary(str(BIN / "romlab"), str(tmp_path / "gone.bin"), results=[(0, {}, ""), (0, {}, "")])
    assert "gone.bin" in s["error"] and s["images"] == []
