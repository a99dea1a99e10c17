"""The server's URL layout, in one place: the app routes by it, metrics label by it, clients build from it.

    /health /ready /metadata /predict /metrics             the server (a single-model server's own routes)
    /models                                                what is loaded, the budget
    /models/{name}/metadata|ready|predict                  one model, our request and answer shapes
    /v2  /v2/health/live|ready                             Open Inference Protocol (V2): the server
    /v2/models/{name}[/versions/{version}][/ready|/infer]  V2: one model
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

_MODEL = re.compile(r"/models/(?P<name>[^/]+)/(?P<verb>metadata|ready|predict)/?")
_V2_MODEL = re.compile(r"/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/(?P<verb>ready|infer))?/?")


@dataclass(frozen=True)
class ModelRoute:
    """A per-model path: the model's name, the version the path names (V2), and its template (a metric label)."""

    name: str
    verb: str  # metadata, ready, predict, infer ("metadata" for a bare /v2/models/{name})
    version: str | None
    template: str
    v2: bool


def model_route(path: str) -> ModelRoute | None:
    """The per-model route ``path`` is, or None."""
    if path.startswith("/models/"):
        match = _MODEL.fullmatch(path)
        if match:
            verb = match["verb"]
            return ModelRoute(match["name"], verb, None, f"/models/{{name}}/{verb}", False)
    elif path.startswith("/v2/models/"):
        match = _V2_MODEL.fullmatch(path)
        if match:
            verb = match["verb"] or "metadata"
            template = "/v2/models/{name}" + (f"/{verb}" if match["verb"] else "")
            return ModelRoute(match["name"], verb, match["version"], template, True)
    return None


def model_url(base_url: str, name: str, verb: str) -> str:
    """``<base_url>/models/<name>/<verb>``: what a client calls for one model of a server."""
    return f"{base_url.rstrip('/')}/models/{quote(name, safe='')}/{verb}"
