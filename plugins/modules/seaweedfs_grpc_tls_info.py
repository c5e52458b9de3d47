#!/usr/bin/python
# SPDX-License-Identifier: GPL-3.0-or-later
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: seaweedfs_grpc_tls_info
short_description: Say in one call whether SeaweedFS's gRPC CA, keys, requests and certificates are in place
version_added: 0.3.0
description:
  - Reads the gRPC CA's and weed's private keys, requests and certificates and their directories, and checks them
    as strictly as the seaweedfs role's community.crypto tasks would, never more loosely - owner V(root), group
    V(root), mode V(0700) for the directories and V(0600) for the files, secp256r1 keys, requests that match their
    key, common name and extensions, certificates that match their request, are signed by the CA, carry the key
    identifiers and have not expired, and the C(python3-cryptography) package installed.
  - On a rerun with nothing to do, this replaces the ten round trips of those tasks; any doubt answers
    RV(current=false) and the role runs them.
  - Never returns a private key; returns weed's certificate (public) when everything is current.
extends_documentation_fragment:
  - borgstack.stack.attributes.read_only
  - borgstack.stack.attributes
requirements:
  - cryptography (the C(python3-cryptography) package); without it the answer is RV(current=false).
options:
  ca_dir:
    description: Directory of the CA's key and of both requests.
    type: path
    required: true
  tls_dir:
    description: Directory of weed's key and of both certificates.
    type: path
    required: true
  weed_cn:
    description: Common name of weed's certificate.
    type: str
    required: true
"""

EXAMPLES = r"""
- name: Read the gRPC CA, keys and certificates in one call
  borgstack.stack.seaweedfs_grpc_tls_info:
    ca_dir: /opt/borgstack/services/seaweedfs/ca
    tls_dir: /opt/borgstack/services/seaweedfs/tls
    weed_cn: seaweedfs
  register: __seaweedfs_tls_state
"""

RETURN = r"""
current:
  description: Whether every directory, key, request and certificate is in place.
  returned: always
  type: bool
why:
  description: The first thing found not in place.
  returned: when RV(current) is false
  type: str
  sample: /opt/borgstack/services/seaweedfs/tls/weed.crt is missing
certificate:
  description: weed's certificate (PEM).
  returned: when RV(current) is true
  type: str
"""

from ansible.module_utils.basic import AnsibleModule  # noqa: E402

from ansible_collections.borgstack.stack.plugins.module_utils._grpc_tls import grpc_tls_state  # noqa: E402

ARGUMENT_SPEC = {
    "ca_dir": {"type": "path", "required": True},
    "tls_dir": {"type": "path", "required": True},
    "weed_cn": {"type": "str", "required": True},
}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)

    def run(argv: list[str]) -> tuple[int, str, str]:
        try:
            return module.run_command(argv, check_rc=False, handle_exceptions=False)
        except OSError as error:
            return 127, "", str(error)

    result = grpc_tls_state(module.params["ca_dir"], module.params["tls_dir"], module.params["weed_cn"], run)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
