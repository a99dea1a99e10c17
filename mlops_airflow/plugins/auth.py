"""The plugin's gate: the API server's own JWT, checked the way its REST API checks it.

Airflow mounts a plugin's FastAPI app without any authentication, so every route of ours
depends on :func:`require_viewer`. It reads the token where Airflow's clients send it (an
``Authorization: Bearer`` header wins over the UI's ``_token`` cookie, as in Airflow's own
``get_user``), validates it with the running auth manager, and asks that auth manager
whether the user may use the web UI at all.

Airflow modules are imported inside the function: the plugin module is imported by every
Airflow process, and these only matter on the API server. The Airflow internals used here
are pinned by ``tests/unit/plugins/test_plugin_airflow_pins.py``.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, Request, status


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, else None."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def require_viewer(request: Request) -> Any:
    """The authenticated Airflow user; 401 without a token or with an expired one, 403 if invalid or not allowed."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView
    from airflow.api_fastapi.core_api.security import resolve_user_from_token

    token = bearer_token(request.headers.get("authorization")) or request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    user = await resolve_user_from_token(token)  # 401 for none or expired, 403 for an invalid signature
    # The Models page shows what any UI user may see (the WEBSITE view, Viewer and up in
    # the simple and FAB auth managers); it changes nothing, so no stronger permission applies.
    if not get_auth_manager().is_authorized_view(access_view=AccessView.WEBSITE, user=user):
        raise HTTPException(status_code=status.HTTP_403_FORBIDDEN, detail="Forbidden")
    return user
