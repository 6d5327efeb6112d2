"""The service's limits and knobs (:class:`ServeConfig`) and the checks of one request's parts.

Every refusal is a :class:`ServeError` carrying the HTTP status and a message that says what was
wrong, where (which item of a batch, which field) and what to do. The statuses:

====================================  ======  ===================================================
refusal                               status  default limit (``mner serve`` flag)
====================================  ======  ===================================================
request body too large                413     16 MiB (``--max-body-mb``), checked while reading
image file too large                  413     10 MiB (``--max-image-mb``)
image has too many pixels             422     40 megapixels (``--max-image-pixels``)
image format not supported            415     JPEG, PNG, GIF, WebP, BMP, TIFF
image corrupt / not valid base64      422
text too long                         422     2,000 characters (``--max-text-chars``)
batch too large                       422     64 items (``--max-batch-items``)
request body not sent in time         408     60 s (``--body-timeout``), then the connection closes
queue full                            503     256 waiting items (``--max-queue``), ``Retry-After``
request timed out                     504     30 s (``--timeout``)
====================================  ======  ===================================================
"""

from __future__ import annotations

import base64
import binascii
import math
from dataclasses import asdict, dataclass
from typing import Any

from PIL import Image

from mner.data.images import ImageError, load_image

__all__ = ["SUPPORTED_FORMATS", "ServeConfig", "ServeError", "check_text", "decode_base64", "open_image"]

#: PIL format names the service accepts (what browsers and phones send).
SUPPORTED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP", "TIFF", "MPO")

MIB = 1024 * 1024


@dataclass
class ServeConfig:
    """Limits and batching knobs of ``mner serve`` (defaults documented in ``docs/serve.md``).

    Args:
        max_body_bytes: largest request body (413 beyond; counted while reading, before parsing).
        max_image_bytes: largest image file, after base64 decoding (413 beyond).
        max_image_pixels: largest width x height of an image (422 beyond; read from the header,
            before the pixels are decoded).
        max_text_chars: longest text, in Unicode code points (422 beyond).
        max_batch_items: most items of one ``{"items": [...]}`` request (422 beyond).
        max_batch_size: most items the model runs at once (micro-batching).
        max_wait_ms: longest a first waiting item waits for others to join its batch.
        max_queue: most items waiting for the model (503 with ``Retry-After`` beyond); at least
            ``max_batch_items``, so that every request the service accepts can be queued.
        timeout_s: longest a request waits for its answer (504 beyond).
        body_timeout_s: longest the service waits for a request's whole body (408 and the
            connection closed beyond).
        retry_after_s: the ``Retry-After`` of a 503.

    Every value is checked here (a finite number, an integer where a count is meant, in range),
    so a bad setting stops ``mner serve`` at start with one line instead of failing requests.
    """

    max_body_bytes: int = 16 * MIB
    max_image_bytes: int = 10 * MIB
    max_image_pixels: int = 40_000_000
    max_text_chars: int = 2000
    max_batch_items: int = 64
    max_batch_size: int = 16
    max_wait_ms: float = 5.0
    max_queue: int = 256
    timeout_s: float = 30.0
    body_timeout_s: float = 60.0
    retry_after_s: int = 1

    #: the fields that hold seconds or milliseconds (any finite number); the others count
    _REAL = ("max_wait_ms", "timeout_s", "body_timeout_s")

    def __post_init__(self) -> None:
        for name, value in asdict(self).items():
            real = name in self._REAL
            if isinstance(value, bool) or not isinstance(value, (int, float) if real else int):
                raise ValueError(f"serve config: {name} must be {'a number' if real else 'an integer'}, "
                                 f"got {value!r}")
            if not math.isfinite(value):
                raise ValueError(f"serve config: {name} must be a finite number, got {value}")
            if (value < 0) if name == "max_wait_ms" else (value <= 0):
                raise ValueError(f"serve config: {name} must be positive, got {value}")
        if self.max_queue < self.max_batch_items:
            raise ValueError(f"serve config: max_queue ({self.max_queue}) is smaller than max_batch_items "
                             f"({self.max_batch_items}): a batch request of more than {self.max_queue} items "
                             "could never be queued; raise --max-queue or lower --max-batch-items")
        if self.max_wait_ms >= self.timeout_s * 1000:
            raise ValueError(f"serve config: max_wait_ms ({self.max_wait_ms:g}) must be shorter than the "
                             f"timeout ({self.timeout_s:g} s), or every request would time out")

    def public(self) -> dict[str, Any]:
        return asdict(self)


class ServeError(Exception):
    """A refusal with its HTTP status, a short code word and a message a person can act on."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.code, "status": self.status, "message": self.message}


def _where(where: str) -> str:
    return f"{where}: " if where else ""


def check_text(text: str, cfg: ServeConfig, where: str = "", field: str = "text") -> str:
    """``text`` within the length limit and Unicode text (a JSON ``\\ud800`` escape decodes to a lone
    surrogate, which no encoder can read): refused at parse, with its position, not by the model."""
    for i, ch in enumerate(text):
        if "\ud800" <= ch <= "\udfff":
            raise ServeError(422, "invalid_text",
                             f"{_where(where)}{field} holds an unpaired surrogate U+{ord(ch):04X} at character {i} "
                             f"(not Unicode text); send the {field} as valid UTF-8 (a JSON surrogate escape must "
                             "come in a pair)")
    if len(text) > cfg.max_text_chars:
        raise ServeError(422, "text_too_long",
                         f"{_where(where)}text has {len(text):,} characters, more than the limit of "
                         f"{cfg.max_text_chars:,}; send a shorter text (or start the server with a "
                         "larger --max-text-chars)")
    return text


def decode_base64(data: str, cfg: ServeConfig, where: str = "") -> bytes:
    """The bytes of a base64 image (a ``data:image/...;base64,`` prefix is allowed)."""
    if data.startswith("data:"):
        data = data.partition(",")[2]
    # 4 base64 characters carry 3 bytes: refuse before decoding what cannot fit
    if len(data) * 3 // 4 > cfg.max_image_bytes + 3:
        raise _too_big(len(data) * 3 // 4, cfg, where)
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ServeError(422, "bad_base64", f"{_where(where)}image is not valid base64; send the file's "
                         "bytes base64-encoded (e.g. base64.b64encode(open(path, 'rb').read()).decode())") from None
    if len(raw) > cfg.max_image_bytes:
        raise _too_big(len(raw), cfg, where)
    return raw


def _too_big(n: int, cfg: ServeConfig, where: str) -> ServeError:
    return ServeError(413, "image_too_large",
                      f"{_where(where)}image has {n / MIB:.1f} MiB, more than the limit of "
                      f"{cfg.max_image_bytes / MIB:.1f} MiB; send a smaller (re-encoded or resized) "
                      "image, or start the server with a larger --max-image-mb")


def open_image(raw: bytes, cfg: ServeConfig, where: str = "") -> Image.Image:
    """The RGB image the model sees, from a file's bytes, by the library's one loader
    (:func:`mner.data.images.load_image`: EXIF rotation, 16-bit rescaled, alpha on white, the same
    pixels as ``Pipeline`` and ``mner predict`` give the model), or a :class:`ServeError` naming the
    problem: too many bytes (413), an unknown or unsupported format (415), too many pixels or a
    corrupt file (422). The pixel count is read from the header, before any pixel is decoded."""
    if len(raw) > cfg.max_image_bytes:
        raise _too_big(len(raw), cfg, where)
    try:
        return load_image(raw, where or "image", max_pixels=cfg.max_image_pixels, max_bytes=cfg.max_image_bytes,
                          formats=SUPPORTED_FORMATS)
    except ImageError as err:
        raise _image_refusal(err, cfg, where) from None
    except Exception as err:  # noqa: BLE001 - a file PIL cannot parse in a way nobody foresaw is the sender's file
        raise ServeError(422, "corrupt_image", f"{_where(where)}image cannot be read ({err}); "
                         "send the original file again") from None


def _image_refusal(err: ImageError, cfg: ServeConfig, where: str) -> ServeError:
    """The HTTP refusal of what :func:`~mner.data.images.load_image` found wrong."""
    at, formats = _where(where), ", ".join(SUPPORTED_FORMATS[:-1])
    if err.kind == "too-many-bytes":
        return _too_big(err.nbytes or 0, cfg, where)
    if err.kind == "empty":
        return ServeError(422, "empty_image", f"{at}image is empty (0 bytes); send the file's bytes, or leave "
                          "the image out")
    if err.unrecognised:
        return ServeError(415, "unsupported_image", f"{at}image is not in a format this service reads (it accepts "
                          f"{formats}); convert it, e.g. to JPEG or PNG")
    if err.kind == "unsupported-format":
        return ServeError(415, "unsupported_image", f"{at}image is {err.format}, not a format this service reads "
                          f"({formats}); convert it, e.g. to JPEG or PNG")
    if err.kind == "too-large":
        if err.size is None:  # over PIL's own hard limit, found before the header's size was known
            return ServeError(422, "image_too_many_pixels", f"{at}image has more pixels than the limit of "
                              f"{cfg.max_image_pixels:,}; resize it")
        w, h = err.size
        return ServeError(422, "image_too_many_pixels",
                          f"{at}image is {w} x {h} = {w * h:,} pixels, more than the limit of "
                          f"{cfg.max_image_pixels:,}; resize it (the model sees a few hundred pixels a side) or "
                          "start the server with a larger --max-image-pixels")
    if err.size is None:
        return ServeError(422, "corrupt_image", f"{at}image cannot be read ({err.detail}); send the original "
                          "file again")
    w, h = err.size
    return ServeError(422, "corrupt_image", f"{at}image ({err.format}, {w} x {h}) is {err.kind}: {err.detail}; "
                      "send the original file again")
