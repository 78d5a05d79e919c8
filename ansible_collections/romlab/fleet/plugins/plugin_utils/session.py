# -*- coding: utf-8 -*-
# Copyright: romlab developers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the action plugins learn about the SSH session itself, on the controller's side."""
from __future__ import absolute_import, division, print_function

__metaclass__ = type

from ansible.module_utils.common.text.converters import to_text


def ssh_connection(action):
    """SSH_CONNECTION as the login shell on the host sees it, or None: under become, sudo removes it
    from the module's environment, and without it the module cannot tell which NIC carries the
    session. ``action`` is the running action plugin (its low-level command runs without become)."""
    res = action._low_level_execute_command("echo $SSH_CONNECTION", sudoable=False)
    text = to_text(res.get("stdout", "")).strip()
    return text if res.get("rc") == 0 and len(text.split()) == 4 else None
