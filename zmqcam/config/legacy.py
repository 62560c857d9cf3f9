"""The original system's ``cameras_config.json``, read as it is (typo ``hight`` included).

``legacy_dict`` maps it onto the TOML-shaped dict ``zmqcam.config.loading.from_dict`` validates:
cameras named cam0, cam1, ..., ``concat_x`` as ``crop``, the URL the transport picks as ``source``.
``LEGACY_NAMES`` maps key paths back, so an error names the key the user actually wrote.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from zmqcam.config.messages import pydantic_lines, show_value
from zmqcam.config.models import Point, _Model, infer_kind
from zmqcam.errors import ConfigError


class _LegacyUrl(_Model):
    jpg: str | None = None
    rtsp: str | None = None


class _LegacyPerspective(_Model):
    src: Annotated[list[Point], Field(min_length=4, max_length=4)]
    width: Annotated[int, Field(gt=0)]
    # the original spelled it "hight"; "height" is accepted too
    hight: Annotated[int, Field(gt=0)] | None = None
    height: Annotated[int, Field(gt=0)] | None = None


class _LegacyConcat(_Model):
    front: Annotated[int, Field(ge=0)]
    back: Annotated[int, Field(gt=0)]


class _LegacyCamera(_Model):
    url: _LegacyUrl
    rotate: Literal[0, 90, 180, 270] = 0
    perspective: _LegacyPerspective
    concat_x: _LegacyConcat


class _LegacyConfig(_Model):
    camera: Annotated[list[_LegacyCamera], Field(min_length=1)]
    #: which URL to use when a camera lists both: "jpg" (default) or "rtsp"
    transport: Literal["jpg", "rtsp"] = "jpg"


#: new key path fragments -> the original's, so errors name the keys the user actually wrote
LEGACY_NAMES = {".crop.": ".concat_x.", "perspective.height": "perspective.hight", ".source": ".url"}


def legacy_dict(data: Any, *, label: str = "<config>", transport: str | None = None) -> dict[str, Any]:
    """The original format's ``data`` as a TOML-shaped config dict; ConfigError for what the
    original format itself forbids (the rest is checked when the dict is validated)."""
    if not isinstance(data, dict):
        raise ConfigError([f"{label}: the top level must be an object, got {show_value(data)}"])
    try:
        legacy = _LegacyConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(pydantic_lines(exc, label)) from None
    if transport is not None and transport not in ("jpg", "rtsp"):
        raise ConfigError([f"{label}: transport: {transport!r}: must be 'jpg' or 'rtsp'"])
    chosen = transport or legacy.transport
    cameras = []
    problems = []
    for i, cam in enumerate(legacy.camera):
        height = cam.perspective.hight if cam.perspective.hight is not None else cam.perspective.height
        if height is None:
            problems.append(f"{label}: camera[{i}].perspective.hight: (missing): required key is missing")
            continue
        urls = {"jpg": cam.url.jpg, "rtsp": cam.url.rtsp}
        source = urls[chosen] or urls["jpg"] or urls["rtsp"]
        if not source:
            problems.append(f"{label}: camera[{i}].url: {{}}: needs a 'jpg' or an 'rtsp' URL")
            continue
        kind = "rtsp" if source == urls["rtsp"] else "snapshot"
        cameras.append(
            {
                "name": f"cam{i}",
                "source": source,
                # only where the URL does not say it: a user who later edits the URL (to the MJPEG
                # stream, say) must not keep a stale kind that no longer fits
                "kind": None if infer_kind(source) == kind else kind,
                "rotate": cam.rotate,
                "perspective": {"src": cam.perspective.src, "width": cam.perspective.width, "height": height},
                "crop": {"front": cam.concat_x.front, "back": cam.concat_x.back},
            }
        )
    if problems:
        raise ConfigError(problems)
    return {"camera": cameras}
