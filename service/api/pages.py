"""The browser pages: the dashboard at /ui and the API docs at /docs and /redoc. Everything they load
is served from this package (no CDN: an air-gapped cluster shows them too), and every URL in them is
relative, so they work unchanged behind a reverse proxy that serves the API under a path prefix.

The pages hold no data and need no login to load: the dashboard's script calls the API with the
bearer token the user pastes, like any other client."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, FastAPI
from fastapi import Path as PathParam
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse

from service.api.request_metrics import RequestCounts
from service.jobs.errors import NotFound

STATIC = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)


@router.get("/")
@router.get("/ui")
def dashboard_root() -> RedirectResponse:
    # relative, so that the browser keeps whatever prefix a proxy put in front of / or /ui
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


def _files(folder: str) -> dict[str, Path]:
    """The folder's files by name, read once: a request can name only one of these, never a path."""
    return {path.name: path for path in sorted((STATIC / folder).iterdir()) if path.is_file()}


UI_FILES, VENDOR_FILES = _files("ui"), _files("vendor")
File = Annotated[str, PathParam(max_length=100)]


# The dashboard runs only its own scripts and talks only to this API: injected markup could neither
# run a script nor send a token elsewhere; blob: images are the plots the script fetched with the token.
# (Swagger UI and ReDoc start from inline scripts.)
DASHBOARD_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def _file(files: dict[str, Path], name: str, headers: dict[str, str] | None = None) -> FileResponse:
    if name not in files:
        raise NotFound("no such file")
    return FileResponse(files[name], headers=headers)


@router.get("/ui/")
def dashboard() -> FileResponse:
    return _file(UI_FILES, "index.html", {"Content-Security-Policy": DASHBOARD_POLICY})


@router.get("/ui/{file}")
def dashboard_file(file: File) -> FileResponse:
    # the policy on every file: index.html named directly is the dashboard too
    return _file(UI_FILES, file, {"Content-Security-Policy": DASHBOARD_POLICY})


@router.get("/vendor/{file}")
def vendor_file(file: File) -> FileResponse:
    return _file(VENDOR_FILES, file)


def install_pages(app: FastAPI, counts: RequestCounts) -> None:
    """The page routes; the app must be built with docs_url=None and redoc_url=None."""
    app.include_router(router)
    counts.name_routes(router)
