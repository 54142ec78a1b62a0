"""Decode files the way `gcloud container binauthz ... import` does and print them the way
gcloud prints resources: the oracle for tests/gcloud_import.rs.

usage: python3 gcloud_decode.py SDK_ROOT API_VERSION MESSAGE FILE...
For each FILE prints `=== FILE`, then gcloud's YAML of the decoded message, or `ERROR: ...`.
"""
import os
import sys

sdk_root, api_version, message_name = sys.argv[1:4]
sys.path[:0] = [os.path.join(sdk_root, 'lib', 'third_party'), os.path.join(sdk_root, 'lib')]

from googlecloudsdk.api_lib.container.binauthz import apis  # noqa: E402
from googlecloudsdk.api_lib.util import messages as messages_util  # noqa: E402
from googlecloudsdk.command_lib.container.binauthz import parsing  # noqa: E402
from googlecloudsdk.core.resource import resource_printer  # noqa: E402

message_type = getattr(apis.GetMessagesModule(api_version), message_name)
for path in sys.argv[4:]:
    sys.stdout.write('=== %s\n' % path)
    sys.stdout.flush()
    try:
        obj = parsing.LoadResourceFile(path) or {}
        message = messages_util.DictToMessageWithErrorCheck(obj, message_type)
    except Exception as e:  # the test compares the message, whatever the class
        sys.stdout.write('ERROR: %s\n' % ' '.join(str(e).split()))
        continue
    resource_printer.Print(message, 'yaml', out=sys.stdout)
    sys.stdout.flush()
