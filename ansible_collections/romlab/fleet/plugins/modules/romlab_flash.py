#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: romlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
---
module: romlab_flash
short_description: Write option ROMs into the flash of a host's NICs, backed up on the controller first
version_added: "0.1.0"
description:
  - Chooses the ROM for each selected NIC from a map of PCI IDs to ROM files, backs up the NIC's
    whole flash chip with C(romlab flash --backup), and writes the ROM with C(romlab flash), which
    erases and programs only the blocks that differ and verifies the whole chip.
  - The action plugin of the same name copies the ROM files from the controller, fetches each
    backup into O(backup_dir) on the controller and checks its sha256 there before anything is
    written. Run the module through the action plugin (the normal way to call it).
  - Idempotent - a NIC whose flash already holds the image is reported unchanged and is not backed
    up again.
  - Refuses any NIC that carries the connection Ansible came in on (found from E(SSH_CONNECTION) -
    the route back to the controller and the interface holding the server address, followed down
    through bonds, bridges and VLANs to PCI; every function of that card counts), and any listed in
    O(management_nics). Over SSH, when that NIC cannot be found, refuses to flash at all unless
    O(management_nics) is given.
  - When a write fails the module fails with romlab's message, the backup's path on the controller,
    and the commands that finish or undo the write.
author:
  - romlab developers (@romlab)
options:
  romlab:
    description: The romlab program on the managed host.
    type: path
    default: /opt/romlab/bin/romlab
  roms:
    description:
      - Map of PCI C(vendor:device) IDs (of the NIC) to ROM files.
      - Paths on the controller; the action plugin copies them to the host and passes their host
        paths on to the module.
    type: dict
    required: true
  select:
    description: Which NICs to flash; a NIC matching any entry is chosen. Without it, every NIC whose ID is in O(roms).
    type: dict
    default: {}
    suboptions:
      bdf:
        description: PCI addresses (C(0000:03:00.0) or C(03:00.0)).
        type: list
        elements: str
      ids:
        description: PCI C(vendor:device) IDs.
        type: list
        elements: str
      mac:
        description: MAC addresses of the NICs' interfaces.
        type: list
        elements: str
  management_nics:
    description: PCI addresses of NICs never to flash, in addition to the one carrying the SSH connection.
    type: list
    elements: str
    default: []
  ssh_connection:
    description:
      - Set by the action plugin - E(SSH_CONNECTION) as the login shell on the host saw it (C(become)'s
        sudo removes it from the module's environment). Over SSH the module refuses to flash when it
        cannot find the NIC carrying that connection, unless O(management_nics) is given.
    type: str
  backup_dir:
    description:
      - Directory on the controller that receives every backup (one subdirectory per host and NIC).
      - The module itself uses O(remote_backup_dir); this option is the action plugin's.
    type: path
    required: true
  remote_backup_dir:
    description: Directory on the managed host where romlab keeps its backups and write journals.
    type: path
    default: /var/lib/romlab/backups
  stage:
    description:
      - Set by the action plugin, which runs the module twice. V(plan) works out what would change
        and backs up the chips that will; V(write) writes them.
    type: str
    choices: [plan, write]
    default: plan
  expect:
    description:
      - Set by the action plugin for V(write) - the sha256 of each NIC's backup as checked on the
        controller, keyed by PCI address. A NIC that is not listed is not written.
    type: dict
    default: {}
extends_documentation_fragment:
  - romlab.fleet.targets
attributes:
  check_mode:
    support: partial
    description: Reports what would change (romlab's dry run); reads the chips, writes nothing.
    details:
      - A check never unbinds a driver. An in-system NIC (no programmer in O(targets)) whose driver
        keeps romlab from its flash is reported with RV(nics[].would_change=unknown) and a warning,
        not as a change.
  diff_mode:
    support: full
    description: Shows the old and the new ROM of each NIC that changes (IDs, iPXE build, size, sha256).
notes:
  - The lab fleet (C(romlab lab fleet up)) reaches each guest's chip through a serprog programmer.
    On real servers with Intel NICs leave O(targets) out to flash in-system.
seealso:
  - module: romlab.fleet.romlab_restore
  - module: romlab.fleet.romlab_facts
"""

EXAMPLES = r"""
- name: Roll iPXE out to every 82540EM and 82574L
  romlab.fleet.romlab_flash:
    roms:
      "8086:100e": files/ipxe-82540em.rom
      "8086:10d3": files/ipxe-82574l.rom
    backup_dir: "{{ playbook_dir }}/backups"

- name: One NIC, through a programmer clipped onto its flash
  romlab.fleet.romlab_flash:
    roms:
      "8086:100e": files/ipxe-82540em.rom
    select:
      mac: ["52:54:00:aa:00:01"]
    targets:
      - mac: "52:54:00:aa:00:01"
        programmer: serprog:tcp=10.0.2.2:4242
        layout: rom-at-0
    backup_dir: "{{ playbook_dir }}/backups"
"""

RETURN = r"""
nics:
  description: One entry per selected NIC.
  returned: always
  type: list
  elements: dict
  contains:
    bdf:
      description: PCI address.
      type: str
      sample: "0000:01:00.0"
    id:
      description: PCI vendor:device.
      type: str
      sample: "8086:100e"
    rom:
      description: The ROM file chosen for it (its path on the host).
      type: str
    target:
      description: How its flash is reached (a programmer spec or C(pci:BDF)).
      type: str
    changed:
      description: Whether its flash was (or in check mode would be) written.
      type: bool
    would_change:
      description: V(unknown) in check mode when the NIC's flash cannot be read without unbinding its driver.
      type: str
      returned: when unknown
    reason:
      description: Why it is unknown.
      type: str
      returned: when unknown
    erase_bytes:
      description: Bytes romlab erases (or would erase).
      type: int
    program_bytes:
      description: Bytes romlab programs (or would program).
      type: int
    backup:
      description: The backup of the chip on the managed host (V(plan) stage, NICs that change).
      type: str
    backup_sha256:
      description: sha256 of that backup.
      type: str
    controller_backup:
      description: Where the action plugin stored the backup on the controller.
      type: str
    before:
      description: Summary of the ROM the flash held (IDs, iPXE build ID, checksums, lint), diff and check modes.
      type: dict
    after:
      description: Summary of the ROM written.
      type: dict
"""

import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.romlab.fleet.plugins.module_utils.fleet import (
    ManagementUnknown, RomlabFailed, list_nics, management_bdfs, normalize_bdf, normalize_ids, normalize_mac,
    rom_summary, run_many, run_romlab, selected, sha256_file, summary_argvs, target_of, TARGETS_ARG)

# romlab flash's refusal over a chip with an unfinished write names the backup taken before that write.
PENDING_RE = re.compile(r"its original is the backup (\S+);")
SELECT_SPEC = dict(bdf=dict(type="list", elements="str"), ids=dict(type="list", elements="str"),
                   mac=dict(type="list", elements="str"))
ARGUMENT_SPEC = dict(
    romlab=dict(type="path", default="/opt/romlab/bin/romlab"),
    roms=dict(type="dict", required=True),
    select=dict(type="dict", default={}, options=SELECT_SPEC),
    targets=TARGETS_ARG,
    management_nics=dict(type="list", elements="str", default=[]),
    ssh_connection=dict(type="str"),
    backup_dir=dict(type="path", required=True),
    remote_backup_dir=dict(type="path", default="/var/lib/romlab/backups"),
    stage=dict(type="str", choices=["plan", "write"], default="plan"),
    expect=dict(type="dict", default={}),
)


def summaries(romlab, before, after):
    """The diff's two ROM summaries, from one romlab process."""
    res = run_many(romlab, summary_argvs(before) + summary_argvs(after))
    return rom_summary(romlab, before, res[0:2]), rom_summary(romlab, after, res[2:4])


def how_to_recover(entry):
    return ("the card is restorable: put the backup back with the restore playbook "
            "(romlab.fleet.romlab_restore, backup %s), or on the host: romlab restore %s %s" %
            (entry.get("controller_backup") or entry.get("backup"), entry.get("backup"),
             " ".join(entry["_target_args"])))


def choose(module, p):
    """The NICs to flash with their ROM and target; fails on a selection that names a management NIC."""
    try:
        roms = dict((normalize_ids(k), v) for k, v in p["roms"].items())
        for t in p["targets"]:
            if not (t.get("bdf") or t.get("mac")):
                raise ValueError("every entry of targets needs bdf or mac")
            # Checked here, before any NIC is touched, so a typo is a one-line failure, not a traceback later.
            if t.get("bdf"):
                normalize_bdf(t["bdf"])
            if t.get("mac"):
                normalize_mac(t["mac"])
        mgmt = management_bdfs(p["management_nics"], p["ssh_connection"])
        nics = list_nics(p["romlab"])
        chosen = []
        for nic in nics:
            if not selected(nic, p["select"]):
                continue
            explicit = any(p["select"].get(k) for k in ("bdf", "ids", "mac"))
            if nic["bdf"] in mgmt:
                if explicit:
                    module.fail_json(msg="%s (%s) carries the management connection (%s); refusing to flash "
                                         "it: flash it from a console or another network" %
                                         (nic["bdf"], nic["id"], p["ssh_connection"] or os.environ.get("SSH_CONNECTION") or
                                          "listed in management_nics"))
                continue
            if nic["id"] not in roms:
                if explicit:
                    module.fail_json(msg="%s is a %s and roms has no ROM for that ID (it has %s)" %
                                         (nic["bdf"], nic["id"], ", ".join(sorted(roms)) or "none"))
                continue
            chosen.append((nic, roms[nic["id"]]))
    except (ValueError, RomlabFailed, ManagementUnknown) as exc:
        module.fail_json(msg=str(exc))
    return chosen


def main():
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    p = module.params
    env = {"ROMLAB_BACKUP_DIR": p["remote_backup_dir"]}
    results = []
    for nic, rom in choose(module, p):
        target_args, layout_args, desc = target_of(nic, p["targets"])
        entry = {"bdf": nic["bdf"], "id": nic["id"], "rom": rom, "target": desc, "changed": False,
                 "_target_args": target_args}
        try:
            if p["stage"] == "plan":
                # Check mode: romlab's dry run, which never unbinds a driver. Otherwise --verify-only, which
                # may unbind (with --unbind) to read an in-system chip: the run is going to write it anyway.
                _, plan = run_romlab(p["romlab"], ["flash"] + target_args + [rom] + layout_args +
                                     [("--dry-run" if module.check_mode else "--verify-only"), "--no-progress"],
                                     env, ok=(0, 1))
                if plan.get("changes") == "unknown":
                    entry["would_change"] = "unknown"
                    entry["reason"] = plan.get("reason")
                    module.warn("%s: %s" % (nic["bdf"], plan.get("reason")))
                    entry.pop("_target_args")
                    results.append(entry)
                    continue
                entry["erase_bytes"] = plan.get("erase_bytes", 0)
                entry["program_bytes"] = plan.get("program_bytes", 0)
                entry["changed"] = bool(plan.get("erase_blocks") or plan.get("program_bytes"))
                if entry["changed"] and not module.check_mode:
                    _, bk = run_romlab(p["romlab"], ["flash"] + target_args + ["--backup", "--no-progress"], env)
                    entry["backup"] = bk["backup"]
                    entry["backup_sha256"] = bk["sha256"]
                    if module._diff:
                        entry["before"], entry["after"] = summaries(p["romlab"], bk["backup"], rom)
                elif entry["changed"] and module._diff:
                    # Check mode: the chip is read into a file that goes again; no backup is kept.
                    fd, tmp = tempfile.mkstemp(prefix="romlab-read-", suffix=".bin")
                    os.close(fd)
                    os.unlink(tmp)
                    try:
                        # The dry run read the chip without unbinding, so this read can too.
                        run_romlab(p["romlab"], ["flash"] + [a for a in target_args if a != "--unbind"] +
                                   ["--read", tmp, "--no-progress"], env)
                        entry["before"], entry["after"] = summaries(p["romlab"], tmp, rom)
                    finally:
                        if os.path.exists(tmp):
                            os.unlink(tmp)
            else:
                expected = p["expect"].get(nic["bdf"])
                if expected is None:
                    entry.pop("_target_args")
                    results.append(entry)
                    continue
                entry["backup_sha256"] = expected.get("sha256")
                entry["backup"] = expected.get("backup")
                entry["controller_backup"] = expected.get("controller_backup")
                try:
                    # romlab checks the chip against the controller's backup after reading it, before writing.
                    _, done = run_romlab(p["romlab"], ["flash"] + target_args + [rom] + layout_args +
                                         ["--expect-sha256", expected.get("sha256") or "", "--no-progress"], env)
                except RomlabFailed as exc:
                    module.fail_json(msg="%s %s: %s; %s" % (nic["bdf"], desc, exc, how_to_recover(entry)),
                                     nics=results + [dict((k, v) for k, v in entry.items() if k[0] != "_")],
                                     romlab_rc=exc.rc)
                entry["changed"] = bool(done.get("changed"))
                entry["erase_bytes"] = done.get("erased", 0)
                entry["program_bytes"] = done.get("programmed", 0)
                entry["romlab_backup"] = done.get("backup")
                # romlab read the chip again before writing; it must be what the controller holds.
                if done.get("backup"):
                    try:
                        seen = sha256_file(done["backup"])
                    except (IOError, OSError) as exc:
                        seen = "unreadable (%s)" % exc
                    if seen != expected.get("sha256"):
                        module.fail_json(msg="%s: the chip changed between the backup the controller holds and "
                                             "the write (sha256 %s, then %s); it was written, and what it held "
                                             "just before is in %s on the host" %
                                             (nic["bdf"], expected.get("sha256"), seen, done["backup"]))
        except RomlabFailed as exc:
            extra = {}
            pending = PENDING_RE.search(str(exc))
            if pending:
                # The chip holds an unfinished write; the backup to put back is the one taken before it.
                extra = dict(pending_backup=pending.group(1), pending_bdf=nic["bdf"])
            module.fail_json(msg="%s %s: %s" % (nic["bdf"], desc, exc), romlab_rc=exc.rc,
                             nics=[dict((k, v) for k, v in e.items() if k[0] != "_") for e in results], **extra)
        entry.pop("_target_args")
        results.append(entry)
    changed = any(e["changed"] for e in results)
    out = dict(changed=changed, nics=results)
    if module._diff:
        out["diff"] = [dict(before_header="%s %s" % (e["bdf"], e["target"]), after_header="%s %s" % (e["bdf"], e["rom"]),
                            before=_text(e.get("before")), after=_text(e.get("after")))
                       for e in results if e["changed"] and "after" in e]
    module.exit_json(**out)


def _text(summary):
    """A ROM summary as the lines a diff shows."""
    if not summary:
        return ""
    lines = ["size: %s" % summary.get("size"), "sha256: %s" % summary.get("sha256")]
    for n, im in enumerate(summary.get("images", [])):
        lines.append("image %d: %s %s, %s bytes, iPXE %s build %s (%s), product %s" % (
            n, im.get("kind"), im.get("id"), im.get("length"), im.get("ipxe_version"), im.get("ipxe_build_id"),
            im.get("ipxe_build"), im.get("product")))
        lines.append("image %d checksums: %s" % (n, ", ".join("%s %s" % kv for kv in sorted(im["checksums"].items()))))
    lint = summary.get("lint") or {}
    lines.append("lint: %s %s" % (lint.get("verdict"), lint.get("findings") or ""))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
