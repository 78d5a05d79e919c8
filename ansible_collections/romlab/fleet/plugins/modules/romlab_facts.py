#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: romlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: romlab_facts
short_description: Every NIC of a host with its option ROM, its flash and its NVM words
version_added: "0.1.0"
description:
  - Lists the host's network-class PCI functions (BDF, IDs, names, driver, interfaces and MACs)
    with C(romlab list), reads each one's ROM BAR with C(romlab dump) and describes it with
    C(romlab inspect) and C(romlab lint) (images, PCI IDs, iPXE version and build ID, checksums,
    lint verdict, sha256).
  - For NICs whose flash is reached through a programmer (O(targets)), reads the chip
    (C(romlab flash --read)) and describes the ROM it holds.
  - Reads NVM words (C(romlab nvm show)) only where that works without taking the NIC from its
    driver; facts never unbind anything, so a NIC with a driver bound reports why they were not read.
  - Marks the NIC carrying the SSH connection as the management NIC.
author:
  - romlab developers (@romlab)
options:
  romlab:
    description: The romlab program on the managed host.
    type: path
    default: /opt/romlab/bin/romlab
  targets:
    description: Programmers clipped onto NICs' flash chips, as for M(romlab.fleet.romlab_flash).
    type: list
    elements: dict
    default: []
    suboptions:
      bdf:
        description: The NIC, by PCI address. One of O(targets[].bdf) and O(targets[].mac) is required.
        type: str
      mac:
        description: The NIC, by the MAC address of one of its interfaces.
        type: str
      programmer:
        description: A romlab programmer spec.
        type: str
      layout:
        description: Where the ROM sits on the chip (informational here).
        type: str
  read_flash:
    description: Read the flash chips reached through O(targets).
    type: bool
    default: true
  management_nics:
    description: PCI addresses of further management NICs, besides the one carrying the SSH connection.
    type: list
    elements: str
    default: []
attributes:
  check_mode:
    support: full
    description: Only reads.
  diff_mode:
    support: none
    description: Nothing changes, so there is nothing to show.
  facts:
    support: full
    description: Sets O(ignore:romlab_nics) and nothing else.
seealso:
  - module: romlab.fleet.romlab_flash
"""

EXAMPLES = r"""
- name: Gather the NICs' ROM facts
  romlab.fleet.romlab_facts:

- name: The same, reading the chip behind a programmer too
  romlab.fleet.romlab_facts:
    targets:
      - mac: "52:54:00:aa:00:01"
        programmer: serprog:tcp=10.0.2.2:4242
"""

RETURN = r"""
ansible_facts:
  description: Facts added to the host.
  returned: always
  type: complex
  contains:
    romlab_nics:
      description: One entry per network-class PCI function.
      returned: always
      type: list
      elements: dict
      sample:
        - bdf: "0000:01:00.0"
          id: "8086:100e"
          driver: e1000
          interfaces: [{name: eth0, mac: "52:54:00:aa:00:01"}]
          management: false
          rom: {state: valid, sha256: "0123...", images: []}
          flash: {programmer: "serprog:tcp=10.0.2.2:4242", chip: W25X10, jedec: ef3011, size: 131072}
          nvm: {available: false, reason: "the e1000 driver holds BAR 0"}
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.romlab.fleet.plugins.module_utils.fleet import (
    TARGET_SPEC, RomlabFailed, list_nics, management_bdfs, rom_summary, run_romlab, target_of)


def _tmpfile(tmpdir, name):
    return os.path.join(tmpdir, name.replace(":", "-"))


def describe(module, romlab, nic, targets, read_flash, mgmt, tmpdir):
    bdf = nic["bdf"]
    out = dict((k, nic.get(k)) for k in ("bdf", "id", "subsystem", "vendor_name", "device_name", "driver",
                                         "interfaces", "rom_bar_size"))
    out["management"] = bdf in mgmt
    # The ROM BAR, through sysfs: the driver stays bound.
    rom = {"state": nic.get("rom")}
    if nic.get("rom") == "valid":
        path = _tmpfile(tmpdir, bdf + ".rom")
        try:
            run_romlab(romlab, ["dump", "--pci", bdf, "-o", path, "--overwrite"])
            rom.update(rom_summary(romlab, path))
        except RomlabFailed as exc:
            rom["error"] = str(exc)
    out["rom"] = rom
    target_args, _, desc = target_of(nic, targets)
    if target_args[0] == "--programmer" and read_flash:
        path = _tmpfile(tmpdir, bdf + ".flash")
        try:
            _, doc = run_romlab(romlab, ["flash"] + target_args + ["--read", path, "--no-progress"])
            out["flash"] = {"programmer": desc, "chip": doc.get("chip"), "jedec": doc.get("jedec"),
                            "size": doc.get("size"), "sha256": doc.get("sha256"),
                            "rom": rom_summary(romlab, path)}
        except RomlabFailed as exc:
            out["flash"] = {"programmer": desc, "error": str(exc)}
    else:
        # In-system flash access takes BAR 0 from the driver: not something facts do.
        out["flash"] = {"programmer": desc, "read": False,
                        "reason": "in-system flash reads need the NIC unbound; facts never unbind"}
    try:
        _, doc = run_romlab(romlab, ["nvm", "--pci", bdf, "show"])
        out["nvm"] = dict(doc, available=True)
        out["nvm"].pop("schema", None)
    except RomlabFailed as exc:
        out["nvm"] = {"available": False, "reason": str(exc)}
    return out


def main():
    module = AnsibleModule(argument_spec=dict(
        romlab=dict(type="path", default="/opt/romlab/bin/romlab"),
        targets=dict(type="list", elements="dict", default=[], options=TARGET_SPEC),
        read_flash=dict(type="bool", default=True),
        management_nics=dict(type="list", elements="str", default=[]),
    ), supports_check_mode=True)
    p = module.params
    try:
        mgmt = management_bdfs(p["management_nics"])
        nics = list_nics(p["romlab"])
        tmpdir = tempfile.mkdtemp(prefix="romlab-facts-")
        try:
            facts = [describe(module, p["romlab"], n, p["targets"], p["read_flash"], mgmt, tmpdir) for n in nics]
        finally:
            for f in os.listdir(tmpdir):
                os.unlink(os.path.join(tmpdir, f))
            os.rmdir(tmpdir)
    except (ValueError, RomlabFailed) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, ansible_facts={"romlab_nics": facts})


if __name__ == "__main__":
    main()
