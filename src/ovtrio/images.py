"""Server-side JPEG/PNG decoding for 4-D image inputs (OVMS "binary inputs").

A request tensor of datatype BYTES (KServe) or DT_STRING (TF Serving) aimed at a 4-D
``N...HWC`` model input carries one encoded image per item. OVMS rules, kept here:

* decode with OpenCV ``imdecode(IMREAD_UNCHANGED)``: channels in **BGR(A)** order, values as
  stored (0..255), no mean/scale; EXIF orientation is not applied;
* the channel count must equal the model's C (taken from the first image when C is dynamic);
* H and W: a static dimension resizes to it; a bounded range clamps the first image's size into
  the range and every image is resized to that; a fully dynamic dimension keeps the first
  image's size and every image must match it;
* the result is converted to the input's precision (FP32, FP64, FP16, INT8, UINT8, INT16,
  UINT16, INT32); integer targets saturate as OpenCV's ``convertTo`` does (INT8: 255 -> 127).

Differences from OVMS (bug fixes):

* only JPEG and PNG are accepted (checked by signature), and the pixel count read from the
  header is checked against ``max_pixels`` before any pixel is decoded (decompression bombs);
* a corrupt image is a client error (400 / INVALID_ARGUMENT), not UNKNOWN / 500;
* a dynamic batch dimension does not switch resizing off (OVMS stops resizing when any
  dimension of the input, even N, is ``-1``);
* 16-bit PNGs keep their values (0..65535); they are refused for precisions that cannot hold
  them (UINT8, INT8, INT16, FP16) instead of being silently saturated;
* resizing happens on the decoded 8/16-bit pixels, before the precision conversion (cheaper;
  float targets differ from OVMS' convert-then-resize by rounding, at most one unit).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import cv2
import numpy as np

from .errors import InvalidArgument, PayloadTooLarge
from .tensors import TensorSpec

__all__ = ["ImageOptions", "decode_images", "is_image_input"]

Interpolation = Literal["nearest", "bilinear", "bicubic", "area", "lanczos"]

_INTERPOLATION: dict[str, int] = {
    "nearest": cv2.INTER_NEAREST,
    "bilinear": cv2.INTER_LINEAR,
    "bicubic": cv2.INTER_CUBIC,
    "area": cv2.INTER_AREA,
    "lanczos": cv2.INTER_LANCZOS4,
}

_PRECISIONS = ("FP32", "FP64", "FP16", "INT8", "UINT8", "INT16", "UINT16", "INT32")
_HOLD_16_BIT = ("FP32", "FP64", "UINT16", "INT32")
"""Precisions that represent every 16-bit pixel value exactly."""


@dataclass(frozen=True)
class ImageOptions:
    color_order: Literal["BGR", "RGB"] = "BGR"
    """OVMS feeds BGR (OpenCV's order); RGB swaps the first three channels."""
    max_pixels: int = 64_000_000
    """Largest width*height accepted per image, read from the header before decoding."""
    interpolation: Interpolation = "bilinear"

    def __post_init__(self) -> None:
        if self.color_order not in ("BGR", "RGB"):
            raise ValueError(f"color_order must be BGR or RGB, not {self.color_order!r}")
        if self.max_pixels < 1:
            raise ValueError("max_pixels must be positive")
        if self.interpolation not in _INTERPOLATION:
            raise ValueError(f"unknown interpolation {self.interpolation!r}")


# ---------------------------------------------------------------------------- layout


def _layout_tokens(layout: str) -> list[str]:
    return re.findall(r"\.\.\.|.", layout.upper())


def is_image_input(spec: TensorSpec) -> bool:
    """Whether BYTES items sent to ``spec`` are encoded images (OVMS: ``N...HWC`` inputs).

    The input must be 4-D. A known layout must be compatible with ``NHWC`` position by
    position (``?`` matches anything, ``...`` any run), so ``NHWC``, ``N?WC``, ``N...C``
    qualify and ``NCHW`` does not (the caller suggests ``--layout NHWC:NCHW``). When the layout
    is unknown (``""``) or leaves the last dimension unnamed, OVMS' default ``N...HWC`` is
    assumed only if the last dimension looks like channels: 1, 3, 4 or dynamic. That keeps a
    layout-less NCHW model ``[1,3,224,224]`` from being taken for an image input.
    """
    if len(spec.shape) != 4:
        return False
    tokens = _layout_tokens(spec.layout)
    if tokens.count("...") > 1:
        return False
    if "..." in tokens:
        k = tokens.index("...")
        head, tail = tokens[:k], tokens[k + 1 :]
        if len(head) + len(tail) > 4:
            return False
        named = ["?"] * 4
        named[: len(head)] = head
        if tail:
            named[4 - len(tail) :] = tail
    elif tokens:
        if len(tokens) != 4:
            return False
        named = tokens
    else:
        named = ["?"] * 4
    if any(t not in ("?", want) for t, want in zip(named, "NHWC", strict=True)):
        return False
    return named[3] == "C" or spec.shape[3] in (1, 3, 4, -1)


# ---------------------------------------------------------------------------- headers

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
"""Start-of-frame markers (DHT, JPG and DAC share the range but are not frames)."""


def _jpeg_size(data: memoryview) -> tuple[int, int] | None:
    """(width, height) from the first SOFn segment, walking segments by their lengths."""
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:  # TEM, RSTn, SOI: no length
            i += 2
        elif marker in (0xD9, 0xDA):  # EOI or SOS before any frame header
            return None
        elif marker in _JPEG_SOF:
            if i + 9 > n:
                return None
            height, width = struct.unpack_from(">HH", data, i + 5)
            return width, height
        else:
            (length,) = struct.unpack_from(">H", data, i + 2)
            if length < 2:
                return None
            i += 2 + length
    return None


def _image_size(data: memoryview) -> tuple[int, int] | None:
    """(width, height) of a PNG or JPEG from its header; None if neither or truncated."""
    if bytes(data[:8]) == _PNG_SIGNATURE:
        if len(data) < 24 or bytes(data[12:16]) != b"IHDR":
            return None
        width, height = struct.unpack_from(">II", data, 16)
        size: tuple[int, int] | None = (width, height)
    elif bytes(data[:2]) == b"\xff\xd8":
        size = _jpeg_size(data)
    else:
        return None
    return size if size is not None and size[0] > 0 and size[1] > 0 else None


# ---------------------------------------------------------------------------- decoding


def _bounds(spec: TensorSpec, axis: int) -> tuple[int, int]:
    """(min, max) of a dimension; max -1 means unbounded."""
    if spec.shape[axis] >= 0:
        return spec.shape[axis], spec.shape[axis]
    return spec.ranges[axis] if spec.ranges else (0, -1)


def _fmt_bounds(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}:{hi}"


def _fits(value: int, lo: int, hi: int) -> bool:
    return lo <= value and (hi < 0 or value <= hi)


def _target(size: int, lo: int, hi: int) -> int | None:
    """Size to resize to, from the first image's size; None for a fully dynamic dimension."""
    if hi < 0 and lo <= 1:
        return None
    return max(lo, size) if hi < 0 else min(max(lo, size), hi)


def _failed(i: int, why: str = "is not a valid JPEG or PNG image") -> InvalidArgument:
    return InvalidArgument(f"Image decoding failed - item {i} {why}")


def decode_images(
    items: Sequence[bytes | bytearray | memoryview], spec: TensorSpec, options: ImageOptions
) -> np.ndarray[Any, Any]:
    """Decode JPEG/PNG ``items`` into an ``[N, H, W, C]`` array of ``spec``'s datatype.

    Raises InvalidArgument for anything the client got wrong, PayloadTooLarge for an image
    whose header claims more than ``options.max_pixels`` pixels. Every header is checked
    before any image is decoded. Pure and blocking: run it in a worker thread.
    """
    _check_input(spec, len(items))
    buffers = [memoryview(item).cast("B") for item in items]
    sizes = _header_sizes(buffers, spec.name, options.max_pixels)
    out_h, out_w = _output_size(spec, sizes)
    out: np.ndarray[Any, Any] | None = None
    channels = spec.shape[3]
    for i, buf in enumerate(buffers):
        image = _decode(buf, i, sizes[i])
        channels = _channels(image, channels, spec, i)
        image = _convert(image, i, (out_h, out_w), channels, spec, options)
        if out is None:
            out = np.empty((len(buffers), out_h, out_w, channels), spec.datatype.numpy)
        out[i] = image.reshape(out_h, out_w, channels)
    assert out is not None
    return out


def _check_input(spec: TensorSpec, count: int) -> None:
    """Refuse an input that cannot take images, or a batch of ``count`` it cannot hold."""
    name = spec.name
    if not is_image_input(spec):
        raise InvalidArgument(
            f"Input {name} with shape {list(spec.shape)} and layout {spec.layout or 'unknown'} "
            "cannot take encoded images: it must be N...HWC (use --layout NHWC:NCHW)"
        )
    precision = spec.datatype.kserve
    if precision not in _PRECISIONS:
        raise InvalidArgument(
            f"Invalid precision {precision} for an image input; input name: {name}; "
            f"supported: {', '.join(_PRECISIONS)}"
        )
    if not count:
        raise InvalidArgument(f"No images in the request for input {name}")
    n_lo, n_hi = _bounds(spec, 0)
    if not _fits(count, n_lo, n_hi):
        raise InvalidArgument(
            f"Invalid input batch size - Expected: {_fmt_bounds(n_lo, n_hi)}; "
            f"Actual: {count}; input name: {name}"
        )


def _header_sizes(
    buffers: Sequence[memoryview], name: str, max_pixels: int
) -> list[tuple[int, int]]:
    """Each image's (width, height) from its header, every one within ``max_pixels``."""
    sizes: list[tuple[int, int]] = []
    for i, buf in enumerate(buffers):
        if len(buf) == 0:
            raise _failed(i, "is empty")
        size = _image_size(buf)
        if size is None:
            raise _failed(i)
        if size[0] * size[1] > max_pixels:
            raise PayloadTooLarge(
                f"Image item {i} is {size[0]}x{size[1]} pixels, above the limit of "
                f"{max_pixels} pixels per image; input name: {name}"
            )
        sizes.append(size)
    return sizes


def _output_size(spec: TensorSpec, sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """(height, width) every image is resized to, from ``spec`` and the first image."""
    (h_lo, h_hi), (w_lo, w_hi) = _bounds(spec, 1), _bounds(spec, 2)
    first_w, first_h = sizes[0]
    target_h, target_w = _target(first_h, h_lo, h_hi), _target(first_w, w_lo, w_hi)
    for i, (w, h) in enumerate(sizes):
        if (target_h is None and h != first_h) or (target_w is None and w != first_w):
            raise InvalidArgument(
                f"Images in the batch have different resolutions - item 0: {first_w}x{first_h}, "
                f"item {i}: {w}x{h}; input {spec.name} has a dynamic height or width, so images "
                "are not resized and must all be the same size"
            )
    out_h = first_h if target_h is None else target_h
    out_w = first_w if target_w is None else target_w
    return out_h, out_w


def _decode(buf: memoryview, i: int, size: tuple[int, int]) -> np.ndarray[Any, Any]:
    """Item ``i`` decoded as stored (8 or 16 bits, BGR(A) or gray), checked against its header."""
    try:
        image = cv2.imdecode(np.frombuffer(buf, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        image = None
    if image is None or image.ndim not in (2, 3) or image.dtype not in (np.uint8, np.uint16):
        raise _failed(i)
    if (image.shape[1], image.shape[0]) != size:
        raise _failed(i, "has pixel data that does not match its header")
    return image


def _channels(image: np.ndarray[Any, Any], channels: int, spec: TensorSpec, i: int) -> int:
    """The batch's channel count: ``channels``, or item ``i``'s own while it is dynamic (-1)."""
    actual = 1 if image.ndim == 2 else int(image.shape[2])
    if channels < 0:
        c_lo, c_hi = _bounds(spec, 3)
        if not _fits(actual, c_lo, c_hi):
            raise InvalidArgument(
                f"Invalid number of channels - Expected: {_fmt_bounds(c_lo, c_hi)}; "
                f"Actual: {actual}; input name: {spec.name}; item {i}"
            )
        channels = actual
    if actual != channels:
        kind = {1: "grayscale", 3: "BGR", 4: "BGRA (with alpha)"}.get(actual, "")
        raise InvalidArgument(
            f"Invalid number of channels - Expected: {channels}; Actual: {actual}; "
            f"input name: {spec.name}; item {i} decodes to a {kind or str(actual) + '-channel'} "
            "image"
        )
    return channels


def _convert(
    image: np.ndarray[Any, Any],
    i: int,
    out_size: tuple[int, int],
    channels: int,
    spec: TensorSpec,
    options: ImageOptions,
) -> np.ndarray[Any, Any]:
    """Item ``i`` resized to ``out_size`` (height, width), in the channel order asked for."""
    precision = spec.datatype.kserve
    if image.dtype == np.uint16 and precision not in _HOLD_16_BIT:
        raise InvalidArgument(
            f"Image item {i} has 16-bit samples, which precision {precision} of input "
            f"{spec.name} cannot hold; send an 8-bit image"
        )
    out_h, out_w = out_size
    if image.shape[0] != out_h or image.shape[1] != out_w:
        interpolation = _INTERPOLATION[options.interpolation]
        image = cv2.resize(image, (out_w, out_h), interpolation=interpolation)
    if options.color_order == "RGB" and channels in (3, 4):
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB if channels == 3 else cv2.COLOR_BGRA2RGBA)
    if precision == "INT8":
        image = np.minimum(image, 127)
    return image
