# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
name: template
short_description: Render a role's template to a string, as ansible.builtin.template does, without copying every variable
version_added: 0.4.0
author:
  - BorgStack engineers (@borgstack)
description:
  - The same result as C(lookup('ansible.builtin.template', ...)) - the file is found in the role's C(templates/)
    directory (and the other places that lookup searches), rendered with every variable, C(ansible_managed) and the
    C(template_*) variables, plus O(template_vars) - for the roles' Compose files and configuration.
  - ansible-core's lookup deep-copies all the variables before each render (its own source asks why it is not a
    layer over them). With the registry's contracts among them that copy cost more than the render itself, in each
    of the ~40 renders of a run. Here the template's own variables are a layer over the task's, which the render
    cannot change.
options:
  _terms:
    description: Template file names, relative to the role's C(templates/) directory.
    required: true
  template_vars:
    description: Variables added for these templates only (they win over the task's).
    type: dict
    default: {}
"""

EXAMPLES = r"""
- name: Write Redis's configuration
  ansible.builtin.copy:
    dest: /opt/borgstack/services/redis/redis.conf
    content: "{{ lookup('borgstack.stack.template', 'redis.conf.j2') }}"
    mode: "0600"
"""

RETURN = r"""
_raw:
  description: The rendered text of each file.
  type: list
  elements: str
"""

import datetime
import os
import pwd
import time
from collections import ChainMap

from ansible import constants as C
from ansible.errors import AnsibleError
from ansible.plugins.lookup import LookupBase
from ansible.template import trust_as_template


def template_variables(name: str, path: str) -> dict:
    """What ansible-core's template lookup adds: the template_* variables and the default ansible_managed."""
    stat = os.stat(path)
    try:
        owner = pwd.getpwuid(stat.st_uid).pw_name
    except KeyError:
        owner = stat.st_uid
    # The same string as ansible-core's: its placeholders become expressions, never the values themselves.
    managed = C.config.get_config_value("DEFAULT_MANAGED_STR").format(
        host="{{ template_host }}", uid="{{ template_uid }}", file="{{ template_path }}")
    return {
        "template_host": os.uname()[1], "template_path": name,
        "template_mtime": datetime.datetime.fromtimestamp(stat.st_mtime), "template_uid": owner,
        "template_run_date": datetime.datetime.now(), "template_destpath": None, "template_fullpath": path,
        "ansible_managed": trust_as_template(time.strftime(managed, time.localtime(stat.st_mtime))),
    }


class LookupModule(LookupBase):

    def run(self, terms, variables=None, **kwargs):
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        extra = self.get_option("template_vars") or {}
        rendered = []
        for term in terms:
            path = self.find_file_in_search_path(variables, "templates", term)
            if not path:
                raise AnsibleError(f"the template file {term} could not be found for the lookup")
            data = trust_as_template(self._loader.get_text_file_contents(path))
            # Jinja includes: the template's directory, then each search path's templates/ and itself.
            searchpath = [os.path.dirname(path)]
            for base in variables.get("ansible_search_path", []):
                searchpath += [os.path.join(base, "templates"), base]
            own = template_variables(term, path)
            if "ansible_managed" in variables:
                del own["ansible_managed"]  # set by the user: kept, as ansible-core does
            layer = ChainMap({**own, **extra}, variables)
            templar = self._templar.copy_with_new_env(available_variables=layer, searchpath=searchpath)
            rendered.append(templar.template(data, escape_backslashes=False))
        return rendered
