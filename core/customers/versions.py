"""A customer's version: what ``ETag`` tells a client and ``If-Match`` compares.

The version is a digest of the customer's row exactly as the API shows it
(:func:`core.customers.selectors.customer_detail`), the address and loyalty
record included: any change a client could see changes it, whichever way the
change was made (the API, the admin, SQL), and nothing else does.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def customer_version(row: dict[str, Any]) -> str:
    """A strong entity tag of ``row`` (quoted, as HTTP writes it)."""
    canonical = json.dumps(row, sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'
