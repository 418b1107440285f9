"""Loaded (through PYTHONPATH) by the LocalStack that deploy/aws/test.sh starts.

LocalStack 4.12's KMS calls uuid.uuid5(namespace, <bytes>) when it creates a
key: Python 3.12 accepts bytes there, the 3.11 that LocalStack runs on here
(localstack/services.sh) raises "encoding without a string argument", and
every CreateKey answers 500. This is Python 3.12's uuid5, nothing more.
"""

import hashlib
import sys
import uuid

if sys.version_info < (3, 12):
    _uuid5 = uuid.uuid5

    def uuid5(namespace, name):
        if isinstance(name, str):
            return _uuid5(namespace, name)
        digest = hashlib.sha1(namespace.bytes + bytes(name), usedforsecurity=False).digest()
        return uuid.UUID(bytes=digest[:16], version=5)

    uuid.uuid5 = uuid5
