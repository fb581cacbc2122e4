"""The browser pages: the dashboard at /ui and the API docs at /docs and /redoc. Everything they load
is served from this package (no CDN: an air-gapped cluster shows them too), and every URL in them is
relative, so they work unchanged behind a reverse proxy that serves the API under a path prefix.

The pages hold no data and need no login to load: the dashboard's script calls the API with the
bearer token the user pastes, like any other client."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from service.api.request_metrics import RequestCounts

STATIC = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)


@router.get("/ui")
def dashboard_root() -> RedirectResponse:
    # relative, so that the browser keeps whatever prefix a proxy put in front of /ui
    return RedirectResponse("ui/", status_code=307)


@router.get("/docs")
def swagger_ui() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url="openapi.json",
        title="ASCL training service - Swagger UI",
        swagger_js_url="vendor/swagger-ui-bundle.js",
        swagger_css_url="vendor/swagger-ui.css",
        swagger_favicon_url="vendor/favicon-32x32.png",
        oauth2_redirect_url=None,
        # the default validator badge fetches an image from swagger.io
        swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": True},
    )


@router.get("/redoc")
def redoc() -> HTMLResponse:
    return get_redoc_html(
        openapi_url="openapi.json",
        title="ASCL training service - ReDoc",
        redoc_js_url="vendor/redoc.standalone.js",
        redoc_favicon_url="vendor/favicon-32x32.png",
        with_google_fonts=False,
    )


def install_pages(app: FastAPI, counts: RequestCounts) -> None:
    """The page routes and their static files; the app must be built with docs_url=redoc_url=None."""
    app.include_router(router)
    counts.name_routes(router)
    for path, folder in (("/ui", "ui"), ("/vendor", "vendor")):
        app.mount(path, StaticFiles(directory=STATIC / folder, html=True), name=f"static-{folder}")
        counts.name_route(app.routes[-1], f"{path}/{{file}}")
