"""ovtrio.images: JPEG/PNG decoding for 4-D image inputs (OVMS binary inputs, with fixes)."""

from __future__ import annotations

import struct
import zlib
from typing import Any

import cv2
import numpy as np
import pytest

from ovtrio import images
from ovtrio.errors import InvalidArgument, PayloadTooLarge
from ovtrio.images import ImageOptions, decode_images, is_image_input
from ovtrio.tensors import TensorSpec, datatype

RNG = np.random.default_rng(1234)


def spec(
    shape: tuple[int, ...],
    dtype: str = "FP32",
    layout: str = "NHWC",
    ranges: tuple[tuple[int, int], ...] | None = None,
) -> TensorSpec:
    if ranges is None:  # what the runtime reports: (d, d) static, (0, -1) for -1
        ranges = tuple((d, d) if d >= 0 else (0, -1) for d in shape)
    return TensorSpec("image", datatype(dtype), shape, ranges, layout)


def picture(h: int, w: int, c: int, dtype: Any = np.uint8) -> np.ndarray:
    """A smooth image (JPEG-friendly) with some noise, gray when c == 0."""
    top = 65535 if dtype == np.uint16 else 255
    small = RNG.integers(0, top + 1, (max(h // 8, 2), max(w // 8, 2), max(c, 1)))
    img = cv2.resize(small.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    img = img.reshape(h, w, max(c, 1))
    return (
        np.clip(img, 0, top).astype(dtype)[..., 0] if c == 0 else np.clip(img, 0, top).astype(dtype)
    )


def encode(img: np.ndarray, ext: str = ".png", params: list[int] | None = None) -> bytes:
    ok, buf = cv2.imencode(ext, img, params or [])
    assert ok
    return buf.tobytes()


def reference(data: bytes, h: int | None = None, w: int | None = None) -> np.ndarray:
    """What OpenCV itself gives for these bytes, resized like images.py does."""
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    assert img is not None
    if h is not None and w is not None and img.shape[:2] != (h, w):
        img = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
    return img.reshape(img.shape[0], img.shape[1], -1)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims width x height, with an (empty) IDAT: a decompression bomb."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", ihdr)
        + png_chunk(b"IDAT", zlib.compress(b""))
        + png_chunk(b"IEND", b"")
    )


def jpeg_header_only(width: int, height: int) -> bytes:
    """SOI, an APP0 segment, fill bytes and a baseline SOF0 claiming width x height."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xff\xff\xc0" + struct.pack(">HBHHB", 17, 8, height, width, 3) + bytes(9)
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


BGR = picture(48, 64, 3)
GRAY = picture(48, 64, 0)
BGRA = picture(48, 64, 4)


# ---------------------------------------------------------------------------- is_image_input


@pytest.mark.parametrize(
    ("shape", "layout", "expected"),
    [
        ((1, 224, 224, 3), "NHWC", True),
        ((-1, -1, -1, 3), "NHWC", True),
        ((1, 224, 224, 7), "NHWC", True),  # explicit layout wins over the channel heuristic
        ((1, 224, 224, 3), "N?WC", True),
        ((1, 224, 224, 3), "??HW", False),
        ((1, 224, 224, 3), "N...C", True),
        ((1, 224, 224, 3), "N...", True),
        ((1, 3, 224, 224), "N...", False),  # C not named: last dim 224 is no channel count
        ((1, 224, 224, 3), "...", True),
        ((1, 3, 224, 224), "NCHW", False),
        ((1, 224, 224, 3), "NCHW", False),
        ((1, 224, 3, 224), "NHCW", False),
        ((1, 224, 224, 3), "nhwc", True),
        ((1, 224, 224, 3), "N?HWC", False),  # rank 5 layout on a 4-D input
        ((1, 224, 224, 3), "N...H...C", False),
        ((1, 224, 224, 1), "", True),
        ((1, 224, 224, 3), "", True),
        ((1, 224, 224, 4), "", True),
        ((-1, -1, -1, -1), "", True),
        ((1, 3, 224, 224), "", False),
        ((1, 224, 224, 2), "", False),
        ((224, 224, 3), "", False),
        ((224, 224, 3), "HWC", False),
        ((1, 1, 224, 224, 3), "", False),
        ((1, 1, 224, 224, 3), "N?HWC", False),
    ],
)
def test_is_image_input(shape: tuple[int, ...], layout: str, expected: bool) -> None:
    assert is_image_input(spec(shape, layout=layout)) is expected


# ---------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    ("ext", "img", "channels"),
    [(".png", BGR, 3), (".png", GRAY, 1), (".png", BGRA, 4), (".jpg", BGR, 3), (".jpg", GRAY, 1)],
    ids=["png-bgr", "png-gray", "png-bgra", "jpg-bgr", "jpg-gray"],
)
@pytest.mark.parametrize("dtype", ["FP32", "UINT8", "FP16", "INT32", "UINT16", "FP64", "INT16"])
@pytest.mark.parametrize(("h", "w"), [(48, 64), (32, 32), (100, 90), (-1, -1)])
def test_values_equal_opencv(
    ext: str, img: np.ndarray, channels: int, dtype: str, h: int, w: int
) -> None:
    data = encode(img, ext)
    got = decode_images([data, data], spec((2, h, w, channels), dtype), ImageOptions())
    want = reference(data, *((None, None) if h < 0 else (h, w)))
    assert got.dtype == datatype(dtype).numpy
    assert got.shape == (2, *want.shape)
    np.testing.assert_array_equal(got[0], want.astype(got.dtype))
    np.testing.assert_array_equal(got[1], got[0])


def test_rgb_option_swaps_channels() -> None:
    for img, c in [(BGR, 3), (BGRA, 4)]:
        data = encode(img)
        bgr = decode_images([data], spec((1, 48, 64, c), "UINT8"), ImageOptions())
        rgb = decode_images([data], spec((1, 48, 64, c), "UINT8"), ImageOptions(color_order="RGB"))
        np.testing.assert_array_equal(bgr[0], img)
        np.testing.assert_array_equal(rgb[..., :3], bgr[..., 2::-1])
        np.testing.assert_array_equal(rgb[..., 3:], bgr[..., 3:])
    gray = encode(GRAY)
    out = decode_images([gray], spec((1, 48, 64, 1), "UINT8"), ImageOptions(color_order="RGB"))
    np.testing.assert_array_equal(out[0, ..., 0], GRAY)


def test_known_pixels_are_bgr_and_unnormalised() -> None:
    img = np.zeros((2, 2, 3), np.uint8)
    img[..., 2] = 255  # red in BGR
    img[1, 1] = (1, 2, 3)
    out = decode_images([encode(img)], spec((1, 2, 2, 3)), ImageOptions())
    assert out[0, 0, 0].tolist() == [0.0, 0.0, 255.0]
    assert out[0, 1, 1].tolist() == [1.0, 2.0, 3.0]


def test_int8_saturates_like_opencv_convert_to() -> None:
    img = np.array([[[0, 127, 255]]], np.uint8)
    out = decode_images([encode(img)], spec((1, 1, 1, 3), "INT8"), ImageOptions())
    assert out.dtype == np.int8
    assert out[0, 0, 0].tolist() == [0, 127, 127]


def test_interpolation_option() -> None:
    data = encode(BGR)
    near = decode_images(
        [data], spec((1, 24, 32, 3), "UINT8"), ImageOptions(interpolation="nearest")
    )
    want = cv2.resize(BGR, (32, 24), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(near[0], want)


def test_16_bit_png() -> None:
    img = picture(10, 12, 3, np.uint16)
    img[0, 0] = (0, 1000, 65535)
    data = encode(img)
    for dtype in ("UINT16", "INT32", "FP32", "FP64"):
        out = decode_images([data], spec((1, 10, 12, 3), dtype), ImageOptions())
        np.testing.assert_array_equal(out[0], img.astype(out.dtype))
        assert out[0, 0, 0].tolist() == [0, 1000, 65535]
    for dtype in ("UINT8", "INT8", "INT16", "FP16"):
        with pytest.raises(InvalidArgument, match=f"16-bit samples, which precision {dtype}"):
            decode_images([data], spec((1, 10, 12, 3), dtype), ImageOptions())


def test_gray_alpha_and_palette_pngs() -> None:
    def png(w: int, h: int, ctype: int, rows: list[bytes], plte: bytes = b"") -> bytes:
        ihdr = struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0)
        idat = zlib.compress(b"".join(b"\x00" + r for r in rows))
        extra = png_chunk(b"PLTE", plte) if plte else b""
        return (
            b"\x89PNG\r\n\x1a\n"
            + png_chunk(b"IHDR", ihdr)
            + extra
            + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b"")
        )

    gray_alpha = png(2, 1, 4, [bytes([10, 255, 20, 128])])  # OpenCV expands to BGRA
    out = decode_images([gray_alpha], spec((1, 1, 2, 4), "UINT8"), ImageOptions())
    assert out[0, 0].tolist() == [[10, 10, 10, 255], [20, 20, 20, 128]]
    palette = png(2, 1, 3, [bytes([0, 1])], plte=bytes([255, 0, 0, 0, 0, 255]))
    out = decode_images([palette], spec((1, 1, 2, 3), "UINT8"), ImageOptions())
    assert out[0, 0].tolist() == [[0, 0, 255], [255, 0, 0]]


# ---------------------------------------------------------------------------- resolution


@pytest.mark.parametrize(
    ("h_range", "w_range", "image_hw", "want_hw"),
    [
        ((32, 64), (32, 64), (48, 40), (48, 40)),  # inside: untouched
        ((32, 64), (32, 64), (100, 200), (64, 64)),  # above: max
        ((32, 64), (32, 64), (10, 20), (32, 32)),  # below: min
        ((32, 64), (50, 50), (100, 20), (64, 50)),
        ((60, -1), (1, 30), (48, 64), (60, 30)),  # lower bound only, then a bounded range
        ((1, -1), (1, 30), (48, 64), (48, 30)),  # (1, -1) is fully dynamic
    ],
)
def test_range_dims_clamp(
    h_range: tuple[int, int],
    w_range: tuple[int, int],
    image_hw: tuple[int, int],
    want_hw: tuple[int, int],
) -> None:
    data = encode(picture(*image_hw, 3))
    s = spec((1, -1, -1, 3), ranges=((1, 1), h_range, w_range, (3, 3)))
    out = decode_images([data], s, ImageOptions())
    assert out.shape == (1, *want_hw, 3)
    np.testing.assert_array_equal(out[0], reference(data, *want_hw).astype(np.float32))


def test_range_target_comes_from_first_image() -> None:
    first, second = encode(picture(40, 40, 3)), encode(picture(100, 10, 3))
    s = spec((2, -1, -1, 3), ranges=((2, 2), (32, 64), (32, 64), (3, 3)))
    out = decode_images([first, second], s, ImageOptions())
    assert out.shape == (2, 40, 40, 3)
    np.testing.assert_array_equal(out[1], reference(second, 40, 40).astype(np.float32))


def test_static_hw_resizes_mixed_sizes() -> None:
    items = [
        encode(picture(h, w, 3), ext) for (h, w), ext in [((20, 30), ".png"), ((300, 10), ".jpg")]
    ]
    out = decode_images(items, spec((-1, 64, 64, 3)), ImageOptions())  # dynamic N still resizes
    assert out.shape == (2, 64, 64, 3)
    for got, data in zip(out, items, strict=True):
        np.testing.assert_array_equal(got, reference(data, 64, 64).astype(np.float32))


def test_dynamic_hw_keeps_size_and_requires_equal_sizes() -> None:
    a, b = encode(picture(30, 50, 3)), encode(picture(30, 50, 3), ".jpg")
    out = decode_images([a, b], spec((-1, -1, -1, 3)), ImageOptions())
    assert out.shape == (2, 30, 50, 3)
    odd = encode(picture(30, 51, 3))
    with pytest.raises(
        InvalidArgument, match=r"different resolutions - item 0: 50x30, item 2: 51x30"
    ):
        decode_images([a, b, odd], spec((-1, -1, -1, 3)), ImageOptions())
    # Dynamic H only: heights must match, widths are resized to the static W.
    out = decode_images([a, odd], spec((-1, -1, 40, 3)), ImageOptions())
    assert out.shape == (2, 30, 40, 3)
    with pytest.raises(InvalidArgument, match="different resolutions"):
        decode_images([a, encode(picture(31, 50, 3))], spec((-1, -1, 40, 3)), ImageOptions())


def test_dynamic_channels_from_first_image() -> None:
    out = decode_images([encode(GRAY), encode(GRAY)], spec((-1, -1, -1, -1)), ImageOptions())
    assert out.shape == (2, 48, 64, 1)
    out = decode_images([encode(BGRA)], spec((-1, -1, -1, -1)), ImageOptions())
    assert out.shape == (1, 48, 64, 4)
    with pytest.raises(InvalidArgument, match=r"channels - Expected: 1; Actual: 3; .* item 1"):
        decode_images([encode(GRAY), encode(BGR)], spec((-1, -1, -1, -1)), ImageOptions())
    ranged = spec((1, 48, 64, -1), ranges=((1, 1), (48, 48), (64, 64), (3, 4)))
    with pytest.raises(InvalidArgument, match=r"channels - Expected: 3:4; Actual: 1"):
        decode_images([encode(GRAY)], ranged, ImageOptions())


# ---------------------------------------------------------------------------- batch


@pytest.mark.parametrize(
    ("n_shape", "n_range", "count", "error"),
    [
        (2, (2, 2), 2, None),
        (2, (2, 2), 1, "Expected: 2; Actual: 1"),
        (2, (2, 2), 3, "Expected: 2; Actual: 3"),
        (-1, (0, -1), 5, None),
        (-1, (1, 4), 4, None),
        (-1, (1, 4), 5, "Expected: 1:4; Actual: 5"),
        (-1, (2, -1), 1, "Expected: 2:-1; Actual: 1"),
    ],
)
def test_batch_size(n_shape: int, n_range: tuple[int, int], count: int, error: str | None) -> None:
    s = spec((n_shape, 48, 64, 3), ranges=(n_range, (48, 48), (64, 64), (3, 3)))
    items = [encode(BGR)] * count
    if error is None:
        assert decode_images(items, s, ImageOptions()).shape == (count, 48, 64, 3)
    else:
        with pytest.raises(
            InvalidArgument, match=f"Invalid input batch size - {error}; input name: image"
        ):
            decode_images(items, s, ImageOptions())


def test_static_spec_without_ranges() -> None:
    s = TensorSpec("image", datatype("UINT8"), (1, 48, 64, 3), (), "NHWC")
    assert decode_images([encode(BGR)], s, ImageOptions()).shape == (1, 48, 64, 3)


# ---------------------------------------------------------------------------- errors

JPEG = encode(BGR, ".jpg")
PNG = encode(BGR, ".png")


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"hello, I am not an image", id="text"),
        pytest.param(RNG.integers(0, 256, 5000, dtype=np.uint8).tobytes(), id="random"),
        pytest.param(
            b"\xff\xd8" + RNG.integers(0, 256, 5000, dtype=np.uint8).tobytes(),
            id="jpeg-soi-then-noise",
        ),
        pytest.param(PNG[:33] + bytes(len(PNG) - 33), id="png-zeroed-after-ihdr"),
        pytest.param(JPEG[:200] + b"\x00" * (len(JPEG) - 200), id="jpeg-zeroed"),
        pytest.param(JPEG[: len(JPEG) // 2], id="jpeg-truncated-half"),
        pytest.param(JPEG[:-2], id="jpeg-truncated-no-eoi"),
        pytest.param(JPEG[:20], id="jpeg-truncated-in-headers"),
        pytest.param(JPEG[:3], id="jpeg-soi-only"),
        pytest.param(PNG[: len(PNG) // 2], id="png-truncated-half"),
        pytest.param(PNG[:20], id="png-truncated-ihdr"),
        pytest.param(b"\x89PNG\r\n\x1a\n", id="png-signature-only"),
        pytest.param(png_header_only(0, 10), id="png-zero-width"),
        pytest.param(jpeg_header_only(10, 0), id="jpeg-zero-height"),
        pytest.param(b"\xff\xd8\xff\xda\x00\x08" + bytes(100), id="jpeg-sos-before-sof"),
        pytest.param(encode(BGR, ".bmp"), id="bmp"),
        pytest.param(encode(BGR, ".webp"), id="webp"),
    ],
)
def test_undecodable_items(data: bytes) -> None:
    s = spec((2, 48, 64, 3))
    with pytest.raises(
        InvalidArgument, match="Image decoding failed - item 1 is not a valid JPEG or PNG image"
    ) as info:
        decode_images([PNG, data], s, ImageOptions())
    assert type(info.value) is InvalidArgument
    assert info.value.http_status == 400


def test_empty_inputs() -> None:
    with pytest.raises(InvalidArgument, match="No images"):
        decode_images([], spec((-1, 48, 64, 3)), ImageOptions())
    with pytest.raises(InvalidArgument, match="item 0 is empty"):
        decode_images([b""], spec((-1, 48, 64, 3)), ImageOptions())


@pytest.mark.parametrize(
    "bomb",
    [png_header_only(100_000, 100_000), jpeg_header_only(65_535, 65_535)],
    ids=["png", "jpeg"],
)
def test_decompression_bomb_refused_before_decoding(
    bomb: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_decode(*args: object) -> None:
        raise AssertionError("imdecode must not run")

    monkeypatch.setattr(cv2, "imdecode", no_decode)  # the module images.py calls into
    with pytest.raises(PayloadTooLarge, match="above the limit of 64000000 pixels") as info:
        decode_images([PNG, bomb], spec((2, 48, 64, 3)), ImageOptions())  # PNG first: never decoded
    assert info.value.http_status == 413


def test_max_pixels_option() -> None:
    s = spec((1, 48, 64, 3))
    assert decode_images([PNG], s, ImageOptions(max_pixels=48 * 64)).shape == (1, 48, 64, 3)
    with pytest.raises(PayloadTooLarge, match="64x48 pixels, above the limit of 3071"):
        decode_images([JPEG], s, ImageOptions(max_pixels=48 * 64 - 1))


@pytest.mark.parametrize(
    ("img", "c", "message"),
    [
        (GRAY, 3, "Expected: 3; Actual: 1; input name: image; item 0 decodes to a grayscale"),
        (BGRA, 3, "Expected: 3; Actual: 4; input name: image; item 0 decodes to a BGRA"),
        (BGR, 1, "Expected: 1; Actual: 3"),
        (BGR, 4, "Expected: 4; Actual: 3"),
    ],
)
def test_wrong_channels(img: np.ndarray, c: int, message: str) -> None:
    with pytest.raises(InvalidArgument, match=f"Invalid number of channels - {message}"):
        decode_images([encode(img)], spec((1, 48, 64, c)), ImageOptions())


@pytest.mark.parametrize("dtype", ["INT64", "UINT32", "UINT64", "BOOL", "BYTES"])
def test_wrong_precision(dtype: str) -> None:
    with pytest.raises(InvalidArgument, match=f"Invalid precision {dtype} for an image input"):
        decode_images([PNG], spec((1, 48, 64, 3), dtype), ImageOptions())


def test_not_an_image_input() -> None:
    with pytest.raises(InvalidArgument, match="use --layout NHWC:NCHW"):
        decode_images([PNG], spec((1, 3, 48, 64), layout="NCHW"), ImageOptions())


def test_options_validation() -> None:
    with pytest.raises(ValueError, match="color_order"):
        ImageOptions(color_order="XYZ")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_pixels"):
        ImageOptions(max_pixels=0)
    with pytest.raises(ValueError, match="interpolation"):
        ImageOptions(interpolation="fancy")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("ext", "params"),
    [
        (".jpg", []),
        (".jpg", [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (".jpg", [cv2.IMWRITE_JPEG_OPTIMIZE, 1, cv2.IMWRITE_JPEG_QUALITY, 30]),
        (".png", [cv2.IMWRITE_PNG_COMPRESSION, 9]),
    ],
)
@pytest.mark.parametrize(("h", "w"), [(1, 1), (7, 300), (300, 7), (480, 640)])
def test_header_size_matches_decoder(ext: str, params: list[int], h: int, w: int) -> None:
    data = encode(picture(h, w, 3), ext, params)
    assert images._image_size(memoryview(data)) == (w, h)


def test_jpeg_header_skips_large_app_segments() -> None:
    payload = b"Exif\x00\x00" + b"\xff\xc0" * 29_998
    app1 = b"\xff\xe1" + struct.pack(">H", 2 + len(payload)) + payload
    data = JPEG[:2] + app1 + JPEG[2:]  # fake SOF markers inside the segment must be skipped
    assert images._image_size(memoryview(data)) == (64, 48)
    out = decode_images([data], spec((1, 48, 64, 3), "UINT8"), ImageOptions())
    np.testing.assert_array_equal(out[0], reference(JPEG))


def test_accepts_bytearray_and_memoryview() -> None:
    out = decode_images([bytearray(PNG), memoryview(JPEG)], spec((2, 48, 64, 3)), ImageOptions())
    np.testing.assert_array_equal(out[0], BGR.astype(np.float32))
    np.testing.assert_array_equal(out[1], reference(JPEG).astype(np.float32))
