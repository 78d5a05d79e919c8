# -*- coding: utf-8 -*-
# Copyright: romlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The controller's half of romlab_restore: find the backup, make sure it is this host's and this
NIC's, copy it (with its record) to the host, and let the module write it."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

import glob
import json
import os
import re

from ansible.errors import AnsibleActionFail
from ansible.module_utils.common.text.converters import to_text
from ansible.plugins.action import ActionBase
from ansible_collections.romlab.fleet.plugins.plugin_utils.session import ssh_connection

BDF_SHORT = re.compile(r"^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$")


def _bdf(text):
    t = to_text(text).strip().lower()
    return "0000:" + t if BDF_SHORT.match(t) else t


def default_backup(ddir):
    """The backup to put back when none is named: the oldest one taken since the last write that
    completed (its .fleet.json says write_completed). A roll-out that failed part-way and was run
    again may have backed up the half-written chip after the good backup; the newest file is then
    the wrong one. With no backup after the last completed write, that write's own backup (what
    the chip held before it). None when the directory holds no backup."""
    found = sorted(glob.glob(os.path.join(ddir, "*.bin")))      # names start with the UTC time of the backup
    if not found:
        return None
    last_done = None
    for n, path in enumerate(found):
        try:
            with open(path[:-4] + ".fleet.json") as fh:
                if json.load(fh).get("write_completed"):
                    last_done = n
        except (OSError, ValueError):
            pass
    if last_done is None:
        return found[0]
    return found[last_done + 1] if last_done + 1 < len(found) else found[last_done]


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        host = task_vars.get("inventory_hostname")
        if not args.get("bdf"):
            raise AnsibleActionFail("bdf (the NIC to restore) is required")
        bdf = _bdf(args["bdf"])
        backup = args.get("backup")
        if backup:
            backup = os.path.abspath(os.path.expanduser(to_text(backup)))
        elif args.get("backup_dir"):
            ddir = os.path.join(os.path.abspath(os.path.expanduser(to_text(args["backup_dir"]))), host,
                                bdf.replace(":", "-"))
            backup = default_backup(ddir)
            if backup is None:
                raise AnsibleActionFail("no backup of %s %s under %s" % (host, bdf, ddir))
        else:
            raise AnsibleActionFail("give backup (a .bin on the controller) or backup_dir")
        if backup.endswith(".json"):
            backup = backup[:-5] + ".bin"
        record = backup[:-4] + ".json"
        for f in (backup, record):
            if not os.path.isfile(f):
                raise AnsibleActionFail("%s is missing: a backup is a .bin with its .json record beside it" % f)
        fleet = backup[:-4] + ".fleet.json"
        if os.path.isfile(fleet):
            with open(fleet) as fh:
                owner = json.load(fh)
            if (owner.get("host"), owner.get("bdf")) != (host, bdf) and not args.get("force"):
                raise AnsibleActionFail("%s was taken from %s %s, not %s %s; refusing to put another machine's "
                                        "flash on this one (force: true overrides)" %
                                        (backup, owner.get("host"), owner.get("bdf"), host, bdf))
        elif not args.get("force"):
            raise AnsibleActionFail("%s has no .fleet.json saying whose NIC it was taken from; check it is this "
                                    "host's and set force: true" % backup)

        if not self._connection._shell.tmpdir:
            self._make_tmp_path()
        tmpdir = self._connection._shell.tmpdir
        remote = self._connection._shell.join_path(tmpdir, os.path.basename(backup))
        self._transfer_file(backup, remote)
        self._transfer_file(record, remote[:-4] + ".json")
        self._fixup_perms2([tmpdir])
        args.update(backup=remote, bdf=bdf)
        args.pop("backup_dir", None)
        args["backup_dir"] = os.path.dirname(backup)
        conn = ssh_connection(self)
        if conn:
            args["ssh_connection"] = conn
        out = self._execute_module(module_name="romlab.fleet.romlab_restore", module_args=args, task_vars=task_vars)
        self._remove_tmp_path(tmpdir)
        if "backup" in out:
            out["backup"] = backup
        return dict(result, **out)
