"""moto's standalone S3 server, with conditional PUTs made atomic as they are on S3.

moto checks ``If-None-Match: *`` / ``If-Match`` and then stores the object in separate
steps, and its server answers each request on a thread of its own: two racing PUTs can
both pass the check (under load, two processes registering at once were both given
version 4). The registry relies on S3 deciding such races, so the test double must too:
one lock around moto's PUT handling makes its check and its write one step.

    python tests/s3_server.py -H 127.0.0.1 -p PORT    (moto.server's own arguments)
"""

from __future__ import annotations

import threading
from typing import Any

from moto.s3.responses import S3Response
from moto.server import main

_LOCK = threading.Lock()
_put_object = S3Response.put_object


def _atomic_put_object(self: Any) -> Any:
    with _LOCK:
        return _put_object(self)


S3Response.put_object = _atomic_put_object  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
