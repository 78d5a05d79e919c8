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
  read_flash:
    description: Read the flash chips reached through O(targets).
    type: bool
    default: true
  management_nics:
    description: PCI addresses of further management NICs, besides the one carrying the SSH connection.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - romlab.fleet.targets
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
    TARGETS_ARG, ManagementUnknown, RomlabFailed, list_nics, management_bdfs, normalize_bdf, rom_summary,
    run_many, summary_argvs, target_of)


def _tmpfile(tmpdir, name):
    return os.path.join(tmpdir, name.replace(":", "-"))


def describe_all(romlab, nics, targets, read_flash, mgmt, tmpdir):
    """Every NIC's facts, from one batch of romlab commands (ROM BAR dump, chip read, inspect,
    lint, NVM) run in one process."""
    argvs, plan = [], []
    for nic in nics:
        bdf = nic["bdf"]
        steps = {}
        if nic.get("rom") == "valid":
            path = _tmpfile(tmpdir, bdf + ".rom")
            steps["rom"] = (len(argvs), path)
            argvs += [["dump", "--pci", bdf, "-o", path, "--overwrite"]] + summary_argvs(path)
        target_args, _, desc = target_of(nic, targets)
        if target_args[0] == "--programmer" and read_flash:
            path = _tmpfile(tmpdir, bdf + ".flash")
            steps["flash"] = (len(argvs), path)
            argvs += [["flash"] + target_args + ["--read", path, "--no-progress"]] + summary_argvs(path)
        steps["nvm"] = (len(argvs), None)
        argvs.append(["nvm", "--pci", bdf, "show"])
        plan.append((nic, steps, desc, target_args))
    res = run_many(romlab, argvs)
    facts = []
    for nic, steps, desc, target_args in plan:
        out = dict((k, nic.get(k)) for k in ("bdf", "id", "subsystem", "vendor_name", "device_name", "driver",
                                             "interfaces", "rom_bar_size"))
        out["management"] = nic["bdf"] in mgmt
        # The ROM BAR, through sysfs: the driver stays bound.
        rom = {"state": nic.get("rom")}
        if "rom" in steps:
            at, path = steps["rom"]
            rc, _, err = res[at]
            if rc == 0:
                rom.update(rom_summary(romlab, path, res[at + 1:at + 3]))
            else:
                rom["error"] = err
        out["rom"] = rom
        if "flash" in steps:
            at, path = steps["flash"]
            rc, doc, err = res[at]
            if rc == 0 and doc:
                out["flash"] = {"programmer": desc, "chip": doc.get("chip"), "jedec": doc.get("jedec"),
                                "size": doc.get("size"), "sha256": doc.get("sha256"),
                                "rom": rom_summary(romlab, path, res[at + 1:at + 3])}
            else:
                out["flash"] = {"programmer": desc, "error": err}
        elif target_args[0] == "--programmer":
            out["flash"] = {"programmer": desc, "read": False, "reason": "read_flash is off"}
        else:
            # In-system flash access takes BAR 0 from the driver: not something facts do.
            out["flash"] = {"programmer": desc, "read": False,
                            "reason": "in-system flash reads need the NIC unbound; facts never unbind"}
        rc, doc, err = res[steps["nvm"][0]]
        if rc == 0 and doc:
            out["nvm"] = dict(doc, available=True)
            out["nvm"].pop("schema", None)
        else:
            out["nvm"] = {"available": False, "reason": err}
        facts.append(out)
    return facts


def main():
    module = AnsibleModule(argument_spec=dict(
        romlab=dict(type="path", default="/opt/romlab/bin/romlab"),
        targets=TARGETS_ARG,
        read_flash=dict(type="bool", default=True),
        management_nics=dict(type="list", elements="str", default=[]),
    ), supports_check_mode=True)
    p = module.params
    try:
        try:
            mgmt = management_bdfs(p["management_nics"])
        except ManagementUnknown as exc:
            # Facts change nothing, so an unknown management NIC is worth a warning, not a failure.
            module.warn(str(exc))
            mgmt = set(normalize_bdf(b) for b in p["management_nics"])
        nics = list_nics(p["romlab"])
        tmpdir = tempfile.mkdtemp(prefix="romlab-facts-")
        try:
            facts = describe_all(p["romlab"], nics, p["targets"], p["read_flash"], mgmt, tmpdir)
        finally:
            for f in os.listdir(tmpdir):
                os.unlink(os.path.join(tmpdir, f))
            os.rmdir(tmpdir)
    except (ValueError, RomlabFailed) as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(changed=False, ansible_facts={"romlab_nics": facts})


if __name__ == "__main__":
    main()
