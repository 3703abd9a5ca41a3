#!/usr/bin/env python3
"""Reference fixtures for the Imaging target (Tests/UniFormerTests/Fixtures/images/).

One command regenerates everything, seeded:

    python3 tasks/reference/images.py

It writes small PNG/JPEG files covering the formats that cv2.imread(IMREAD_COLOR) accepts,
damaged files, and for each good file what OpenCV decodes (RGB order, raw bytes `<name>.rgb`).
For resizes it stores cv2.resize(INTER_LINEAR) and PIL bicubic outputs, plus CRC32s of a larger
sweep over synthetic images (the Swift test builds the same synthetic images from `synth`).
manifest.json lists every case; the cv2/Pillow/numpy versions used are recorded in it. The
mmcv imnormalize / rescale_size and torchvision eval-transform references are transcribed here
in numpy; when mmcv or torchvision can be imported they are checked against the real thing
(recorded as "cross_checked": mmcv-lite 2.1.0 and torchvision 0.29.2 agreed bit for bit).

The PNG files are written by a small encoder below (random per-row filters, Adam7 interlacing,
every colour type and bit depth) so that decoding is exercised beyond what cv2/Pillow write.
Run it with a 4.x opencv-python-headless (what mmcv users have; the committed fixtures come from
4.10.0.84, e.g. in a venv with --system-site-packages). The 5.0 build gives the same bytes for
everything here except jpeg_exif6_xmp_first: 4.x reads the orientation only from the first APP1
segment (here XMP, so no rotation), 5.0 finds the EXIF APP1 behind it and rotates.
"""
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib

import cv2
import numpy as np
import PIL
from PIL import Image

ROOT = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.normpath(os.path.join(ROOT, "..", "..", "Tests", "UniFormerTests", "Fixtures", "images"))
SEED = 20240611
rng = np.random.default_rng(SEED)
manifest = {"decode": [], "bad": [], "bilinear": [], "bicubic": [], "sweeps": {}, "normalize": [],
            "imagenet": [], "rescale": []}


def path(name):
    return os.path.join(OUT, name)


def save_bytes(name, data):
    with open(path(name), "wb") as f:
        f.write(data)


# ----------------------------------------------------------------------------------------------
# Content: gradients, hard-edged shapes, a checkerboard and noise, so that every filter and
# rounding path sees both smooth and high-frequency data.

def content(w, h, channels=3, depth=8):
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    top = (1 << depth) - 1
    img = np.zeros((h, w, channels), np.float64)
    for c in range(channels):
        phase = rng.uniform(0, 6.28)
        img[..., c] = 0.5 + 0.5 * np.sin(x / max(w, 1) * (2 + c) * 3.1 + y / max(h, 1) * (3 - c) + phase)
    for _ in range(4):  # hard-edged discs and boxes
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(1, max(3, max(w, h) / 3))
        col = rng.uniform(0, 1, channels)
        if rng.uniform() < 0.5:
            mask = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        else:
            mask = (abs(x - cx) < r) & (abs(y - cy) < r / 2)
        img[mask] = col
    checker = ((x.astype(int) // 2 + y.astype(int) // 2) % 2 == 0) & (x < w / 4) & (y < h / 4)
    img[checker] = 1.0
    img += rng.normal(0, 0.06, img.shape) * (x > w / 2)[..., None]
    img[0, 0] = 0.0
    img[-1, -1] = 1.0
    return np.clip(np.rint(img * top), 0, top).astype(np.uint16 if depth == 16 else np.uint8)


def synth(w, h):
    """Synthetic RGB image that the Swift test rebuilds bit for bit (uint32 arithmetic)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.uint32)
    out = np.zeros((h, w, 3), np.uint8)
    for c in range(3):
        c32 = np.uint32(c)
        v = (x * np.uint32(2654435761) + y * np.uint32(40503) + c32 * np.uint32(97)) & np.uint32(0xffffffff)
        v ^= v >> np.uint32(13)
        v = (v * np.uint32(1274126177)) & np.uint32(0xffffffff)
        noise = (v >> np.uint32(24)) & np.uint32(63)
        smooth = (x * np.uint32(3) + y * np.uint32(5) + c32 * np.uint32(40)) & np.uint32(255)
        edge = np.where(((x // np.uint32(7)) + (y // np.uint32(5))) % np.uint32(3) == 0, np.uint32(120), np.uint32(0))
        out[..., c] = ((smooth + noise + edge) & np.uint32(255)).astype(np.uint8)
    return out


# ----------------------------------------------------------------------------------------------
# A small PNG encoder (own code, zlib from the standard library).

def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xffffffff)


def pack_row(samples, depth):
    """samples: 1-D array of sample values (all channels interleaved) -> PNG row bytes."""
    if depth == 16:
        return samples.astype(">u2").tobytes()
    if depth == 8:
        return samples.astype(np.uint8).tobytes()
    per = 8 // depth
    vals = list(int(v) for v in samples) + [0] * ((-len(samples)) % per)
    out = bytearray()
    for i in range(0, len(vals), per):
        b = 0
        for v in vals[i:i + per]:
            b = (b << depth) | v
        out.append(b)
    return bytes(out)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_row(kind, row, prev, bpp):
    out = bytearray([kind])
    for i, v in enumerate(row):
        a = row[i - bpp] if i >= bpp else 0
        b = prev[i] if prev is not None else 0
        c = prev[i - bpp] if (prev is not None and i >= bpp) else 0
        pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][kind]
        out.append((v - pred) & 255)
    return bytes(out)


def encode_rows(img, depth, channels):
    bpp = max(1, channels * depth // 8)
    data = bytearray()
    prev = None
    for r in range(img.shape[0]):
        row = pack_row(img[r].reshape(-1), depth)
        data += filter_row(int(rng.integers(0, 5)), row, prev, bpp)
        prev = row
    return bytes(data)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(name, img, depth, color_type, palette=None, trns=None, interlace=False, extra=(), after_idat=()):
    """img: H x W x C samples (C = 1, 2, 3 or 4; palette indices for colour type 3)."""
    h, w, channels = img.shape
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0)
    if interlace:
        raw = bytearray()
        for x0, y0, dx, dy in ADAM7:
            sub = img[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                raw += encode_rows(sub, depth, channels)
        raw = bytes(raw)
    else:
        raw = encode_rows(img, depth, channels)
    comp = zlib.compress(raw, 9)
    parts = [b"\x89PNG\r\n\x1a\n", chunk(b"IHDR", ihdr)]
    parts += [chunk(k, d) for k, d in extra]
    if palette is not None:
        parts.append(chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes()))
    if trns is not None:
        parts.append(chunk(b"tRNS", trns))
    # Two IDAT chunks, as encoders that stream do.
    cut = len(comp) // 2
    parts += [chunk(b"IDAT", comp[:cut]), chunk(b"IDAT", comp[cut:])]
    parts += [chunk(k, d) for k, d in after_idat]
    parts.append(chunk(b"IEND", b""))
    data = b"".join(parts)
    save_bytes(name, data)
    return data


# ----------------------------------------------------------------------------------------------
# EXIF (TIFF) blocks written by hand: IFD0 with a few entries and the orientation tag.

def tiff_block(orientation, big_endian=False, broken_string_first=False):
    e = ">" if big_endian else "<"
    entries = []
    make = b"UniFormerCam\x00"
    n = 3 + (1 if broken_string_first else 0)
    ifd_size = 2 + 12 * n + 4
    data_off = 8 + ifd_size
    if broken_string_first:  # ImageDescription whose data offset points past the end
        entries.append(struct.pack(e + "HHII", 0x010E, 2, 40, 0xFFFF0))
    entries.append(struct.pack(e + "HHII", 0x010F, 2, len(make), data_off))  # Make
    entries.append(struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "HH", orientation, 0))
    entries.append(struct.pack(e + "HHII", 0x0128, 3, 1, (2 << 16) if big_endian else 2))  # ResolutionUnit
    head = (b"MM" if big_endian else b"II") + struct.pack(e + "HI", 42, 8)
    ifd = struct.pack(e + "H", n) + b"".join(entries) + struct.pack(e + "I", 0)
    return head + ifd + make


def with_app1(jpeg, payloads):
    """Insert APP1 segments right after SOI (before any JFIF APP0, as cameras do)."""
    assert jpeg[:2] == b"\xff\xd8"
    segs = b"".join(b"\xff\xe1" + struct.pack(">H", len(p) + 2) + p for p in payloads)
    return jpeg[:2] + segs + jpeg[2:]


def pil_jpeg(rgb, **kw):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", **kw)
    return buf.getvalue()


def cv_jpeg(rgb, params):
    ok, enc = cv2.imencode(".jpg", np.ascontiguousarray(rgb[..., ::-1]), params)
    assert ok
    return enc.tobytes()


# ----------------------------------------------------------------------------------------------

def imread_rgb(name):
    img = cv2.imread(path(name), cv2.IMREAD_COLOR)
    if img is None:
        return None
    return np.ascontiguousarray(img[..., ::-1])


def add_decode(name, note, imdecode_agrees=True):
    rgb = imread_rgb(name)
    assert rgb is not None, name
    # The same bytes through imdecode (mmcv.imfrombytes, what mmdet/mmseg's LoadImageFromFile
    # calls) agree with imread, except for a JPEG whose data ends without EOI: imdecode's source
    # manager suspends there and leaves the last MCU row unwritten, imread's inserts an EOI.
    buf = np.frombuffer(open(path(name), "rb").read(), np.uint8)
    again = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    assert (again is not None and np.array_equal(again[..., ::-1], rgb)) == imdecode_agrees, name
    ref = name.rsplit(".", 1)[0] + ".rgb"
    save_bytes(ref, rgb.tobytes())
    manifest["decode"].append({"file": name, "expected": ref, "width": int(rgb.shape[1]),
                               "height": int(rgb.shape[0]), "note": note})
    return rgb


def make_pngs():
    w, h = 61, 47
    rgb8 = content(w, h, 3)
    write_png("png_rgb8.png", rgb8, 8, 2)
    add_decode("png_rgb8.png", "RGB 8-bit, random row filters")
    rgba8 = content(w, h, 4)
    write_png("png_rgba8.png", rgba8, 8, 6)
    add_decode("png_rgba8.png", "RGBA 8-bit: alpha dropped without compositing")
    g8 = content(53, 41, 1)
    write_png("png_gray8.png", g8, 8, 0)
    add_decode("png_gray8.png", "gray 8-bit replicated to 3 channels")
    ga8 = content(53, 41, 2)
    write_png("png_gray_alpha8.png", ga8, 8, 4)
    add_decode("png_gray_alpha8.png", "gray+alpha 8-bit")
    for depth in (1, 2, 4):
        g = (content(45, 37, 1).astype(np.int32) >> (8 - depth)).astype(np.uint8)
        write_png(f"png_gray{depth}.png", g, depth, 0)
        add_decode(f"png_gray{depth}.png", f"gray {depth}-bit expanded to 8")
    pal = rng.integers(0, 256, (200, 3))
    idx = (content(57, 43, 1).astype(np.int32) * 200 // 256).astype(np.uint8)
    write_png("png_palette8.png", idx, 8, 3, palette=pal)
    add_decode("png_palette8.png", "palette 8-bit")
    alpha = bytes(rng.integers(0, 256, 120).astype(np.uint8))
    write_png("png_palette_trns.png", idx, 8, 3, palette=pal, trns=alpha)
    add_decode("png_palette_trns.png", "palette + tRNS: alpha ignored")
    idx4 = (content(39, 31, 1).astype(np.int32) >> 4).astype(np.uint8)
    write_png("png_palette4.png", idx4, 4, 3, palette=pal[:16])
    add_decode("png_palette4.png", "palette 4-bit")
    idx1 = (content(39, 31, 1).astype(np.int32) >> 7).astype(np.uint8)
    write_png("png_palette1_interlaced.png", idx1, 1, 3, palette=pal[:2], interlace=True)
    add_decode("png_palette1_interlaced.png", "palette 1-bit, Adam7")
    write_png("png_gray_trns.png", g8, 8, 0, trns=struct.pack(">H", int(g8[3, 3, 0])))
    add_decode("png_gray_trns.png", "gray + tRNS key")
    write_png("png_rgb_trns.png", rgb8, 8, 2, trns=struct.pack(">HHH", *[int(v) for v in rgb8[5, 5]]))
    add_decode("png_rgb_trns.png", "RGB + tRNS key")
    rgb16 = content(49, 37, 3, 16)
    rgb16[0, :8, 0] = [0x12FF, 0x1280, 0x127F, 0x1200, 0xFFFF, 0x00FF, 0x0080, 0x7F80]
    write_png("png_rgb16.png", rgb16, 16, 2)
    add_decode("png_rgb16.png", "RGB 16-bit reduced to 8")
    g16 = content(43, 35, 1, 16)
    write_png("png_gray16.png", g16, 16, 0)
    add_decode("png_gray16.png", "gray 16-bit")
    rgba16 = content(41, 33, 4, 16)
    write_png("png_rgba16_interlaced.png", rgba16, 16, 6, interlace=True)
    add_decode("png_rgba16_interlaced.png", "RGBA 16-bit, Adam7")
    ga16 = content(41, 33, 2, 16)
    write_png("png_gray_alpha16.png", ga16, 16, 4)
    add_decode("png_gray_alpha16.png", "gray+alpha 16-bit")
    write_png("png_rgb8_interlaced.png", content(67, 51, 3), 8, 2, interlace=True)
    add_decode("png_rgb8_interlaced.png", "RGB 8-bit, Adam7")
    write_png("png_gray2_interlaced.png", (content(13, 11, 1).astype(np.int32) >> 6).astype(np.uint8), 2, 0,
              interlace=True)
    add_decode("png_gray2_interlaced.png", "gray 2-bit, Adam7, tiny (some passes empty)")
    # Ancillary chunks OpenCV does not act on: gAMA (no gamma correction), sBIT, tEXt after IDAT.
    write_png("png_gamma.png", content(37, 29, 3), 8, 2,
              extra=[(b"gAMA", struct.pack(">I", 100000)), (b"sBIT", b"\x05\x06\x05")],
              after_idat=[(b"tEXt", b"Comment\x00written by images.py")])
    add_decode("png_gamma.png", "gAMA 1.0 + sBIT: no gamma correction, no shift")
    write_png("png_1x1.png", content(1, 1, 3), 8, 2)
    add_decode("png_1x1.png", "1x1")
    # eXIf: OpenCV applies the orientation found in a PNG's eXIf chunk too.
    write_png("png_exif6.png", content(31, 23, 3), 8, 2, extra=[(b"eXIf", tiff_block(6, big_endian=True))])
    add_decode("png_exif6.png", "eXIf orientation 6 (MM)")


def make_jpegs():
    base = content(97, 71, 3)
    save_bytes("jpeg_baseline420.jpg", pil_jpeg(base, quality=90, subsampling=2))
    add_decode("jpeg_baseline420.jpg", "baseline 4:2:0, odd size")
    save_bytes("jpeg_444.jpg", pil_jpeg(base, quality=92, subsampling=0))
    add_decode("jpeg_444.jpg", "baseline 4:4:4")
    save_bytes("jpeg_422.jpg", pil_jpeg(base, quality=85, subsampling=1))
    add_decode("jpeg_422.jpg", "baseline 4:2:2 (h2v1 fancy upsampling)")
    save_bytes("jpeg_440.jpg", cv_jpeg(base, [cv2.IMWRITE_JPEG_QUALITY, 88,
                                              cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_440]))
    add_decode("jpeg_440.jpg", "4:4:0 (h1v2 fancy upsampling)")
    save_bytes("jpeg_progressive.jpg", pil_jpeg(content(120, 90, 3), quality=90, progressive=True))
    add_decode("jpeg_progressive.jpg", "progressive 4:2:0")
    save_bytes("jpeg_progressive444.jpg", pil_jpeg(content(45, 61, 3), quality=95, subsampling=0, progressive=True))
    add_decode("jpeg_progressive444.jpg", "progressive 4:4:4")
    save_bytes("jpeg_gray.jpg", pil_jpeg(content(59, 43, 1)[..., 0], quality=90))
    add_decode("jpeg_gray.jpg", "grayscale")
    save_bytes("jpeg_gray_progressive.jpg", pil_jpeg(content(33, 47, 1)[..., 0], quality=80, progressive=True))
    add_decode("jpeg_gray_progressive.jpg", "grayscale progressive")
    save_bytes("jpeg_q15.jpg", pil_jpeg(content(64, 48, 3), quality=15))
    add_decode("jpeg_q15.jpg", "low quality: clipping in IDCT and colour conversion")
    save_bytes("jpeg_restart.jpg", cv_jpeg(content(80, 56, 3), [cv2.IMWRITE_JPEG_QUALITY, 90,
                                                                cv2.IMWRITE_JPEG_RST_INTERVAL, 3]))
    add_decode("jpeg_restart.jpg", "restart markers every 3 MCUs")
    cmyk = Image.fromarray(content(29, 23, 4), "CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG", quality=90)
    save_bytes("jpeg_cmyk.jpg", buf.getvalue())
    add_decode("jpeg_cmyk.jpg", "CMYK (Adobe, inverted) converted as OpenCV does")
    small = content(23, 17, 3)
    plain = pil_jpeg(small, quality=90)
    for o in range(1, 9):
        data = with_app1(plain, [b"Exif\x00\x00" + tiff_block(o, big_endian=(o % 2 == 0))])
        save_bytes(f"jpeg_exif{o}.jpg", data)
        add_decode(f"jpeg_exif{o}.jpg", f"EXIF orientation {o}")
    xmp = b"http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"
    save_bytes("jpeg_exif6_xmp_first.jpg", with_app1(plain, [xmp, b"Exif\x00\x00" + tiff_block(6)]))
    add_decode("jpeg_exif6_xmp_first.jpg", "XMP APP1 before EXIF: OpenCV reads only the first APP1")
    save_bytes("jpeg_exif6_broken_entry.jpg",
               with_app1(plain, [b"Exif\x00\x00" + tiff_block(6, broken_string_first=True)]))
    add_decode("jpeg_exif6_broken_entry.jpg", "an unreadable entry before the orientation stops EXIF parsing")
    save_bytes("jpeg_exif9.jpg", with_app1(plain, [b"Exif\x00\x00" + tiff_block(9)]))
    add_decode("jpeg_exif9.jpg", "orientation 9 (invalid) is ignored")
    # Damage that loses no pixel: OpenCV decodes these (libjpeg only warns) and so do we.
    base420 = open(path("jpeg_baseline420.jpg"), "rb").read()
    assert base420.endswith(b"\xff\xd9")
    save_bytes("jpeg_no_eoi.jpg", base420[:-2])
    add_decode("jpeg_no_eoi.jpg", "baseline without its EOI marker (as imread; imdecode loses the last MCU row)",
               imdecode_agrees=False)
    save_bytes("jpeg_extraneous_bytes.jpg", base420[:-2] + b"\x00junk\x13" + base420[-2:])
    add_decode("jpeg_extraneous_bytes.jpg", "bytes between the last scan and EOI (a warning only)")
    # Arithmetic coding and restart markers in a progressive file: only jpegtran writes these
    # (Debian libjpeg-turbo-progs); without it these cases are left out of the manifest.
    jpegtran = shutil.which("jpegtran")
    if jpegtran is None:
        print("warning: jpegtran not found (apt-get install libjpeg-turbo-progs): "
              "arithmetic-coded fixtures skipped", file=sys.stderr)
        return
    for name, args, src in [("jpeg_arithmetic.jpg", ["-arithmetic"], "jpeg_baseline420.jpg"),
                            ("jpeg_arithmetic_progressive.jpg", ["-arithmetic", "-progressive"], "jpeg_444.jpg"),
                            ("jpeg_progressive_restart.jpg", ["-progressive", "-restart", "2"], "jpeg_422.jpg")]:
        out = subprocess.run([jpegtran, *args, path(src)], check=True, capture_output=True).stdout
        save_bytes(name, out)
        add_decode(name, "jpegtran " + " ".join(args))


def make_bad():
    def bad(name, data, kind):
        save_bytes(name, data)
        try:
            cv_ok = imread_rgb(name) is not None
        except cv2.error:  # e.g. the 60000x60000 header trips validateInputImageSize
            cv_ok = False
        manifest["bad"].append({"file": name, "kind": kind, "cv2_decodes": cv_ok})

    good_png = open(path("png_rgb8.png"), "rb").read()
    bad("bad_png_truncated.png", good_png[:int(len(good_png) * 0.6)], "truncated")
    idat = good_png.index(b"IDAT")
    n = struct.unpack(">I", good_png[idat - 4:idat])[0]
    crc_at = idat + 4 + n
    b = bytearray(good_png)
    b[crc_at] ^= 0x5A
    bad("bad_png_crc.png", bytes(b), "corrupt")
    b = bytearray(good_png)
    for i in range(idat + 20, idat + 40):
        b[i] = (b[i] * 7 + 13) & 255
    b[crc_at:crc_at + 4] = struct.pack(">I", zlib.crc32(bytes(b[idat:idat + 4 + n])) & 0xffffffff)
    bad("bad_png_zlib.png", bytes(b), "corrupt")
    iend = good_png.rindex(b"IEND") - 4
    bad("bad_png_no_iend.png", good_png[:iend], "truncated")
    ihdr = struct.pack(">IIBBBBB", 60000, 60000, 8, 2, 0, 0, 0)
    huge = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + chunk(b"IEND", b"")
    bad("bad_png_huge.png", huge, "too_large")
    bad("bad_png_signature_only.png", b"\x89PNG\r\n\x1a\n", "truncated")

    good_jpg = open(path("jpeg_baseline420.jpg"), "rb").read()
    bad("bad_jpeg_truncated.jpg", good_jpg[:len(good_jpg) // 2], "truncated")
    bad("bad_jpeg_garbage.jpg", b"\xff\xd8" + bytes(rng.integers(0, 256, 3000).astype(np.uint8)), "corrupt")
    sof = good_jpg.index(b"\xff\xc0")
    # SOF0 claims 60000x60000 (height, width at SOF + 5); the rest is the small file's data.
    bad("bad_jpeg_huge.jpg", good_jpg[:sof + 5] + struct.pack(">HH", 60000, 60000) + good_jpg[sof + 9:], "too_large")
    dht = good_jpg.index(b"\xff\xc4")
    b = bytearray(good_jpg)
    b[dht + 5:dht + 21] = bytes([255] * 16)  # code counts that overflow the code space
    bad("bad_jpeg_dht.jpg", bytes(b), "corrupt")
    sos = good_jpg.index(b"\xff\xda")
    b = bytearray(good_jpg)
    for i in range(sos + 40, len(b) - 2, 37):
        if b[i] != 0xFF and b[i - 1] != 0xFF:
            b[i] ^= 0x55
    bad("bad_jpeg_corrupt_data.jpg", bytes(b), "corrupt")
    bad("bad_jpeg_soi_only.jpg", b"\xff\xd8", "truncated")
    prog = open(path("jpeg_progressive.jpg"), "rb").read()
    sos = [i for i in range(len(prog) - 1) if prog[i] == 0xFF and prog[i + 1] == 0xDA]
    bad("bad_jpeg_progressive_cut_between_scans.jpg", prog[:sos[len(sos) // 2]], "truncated")
    bad("bad_empty.png", b"", "unknown")
    bad("bad_text.jpg", b"this is not an image\n", "unknown")


# ----------------------------------------------------------------------------------------------

def make_resizes():
    srcs = {"png_rgb8": imread_rgb("png_rgb8.png"), "jpeg_progressive": imread_rgb("jpeg_progressive.jpg")}
    cases = [("png_rgb8", 97, 73), ("png_rgb8", 30, 23), ("png_rgb8", 123, 31), ("png_rgb8", 20, 80),
             ("png_rgb8", 61, 20), ("png_rgb8", 1, 1), ("png_rgb8", 61, 47),
             ("jpeg_progressive", 60, 45), ("jpeg_progressive", 40, 30), ("jpeg_progressive", 133, 80),
             ("jpeg_progressive", 59, 44), ("jpeg_progressive", 121, 91)]
    for src, w, h in cases:
        img = srcs[src]
        out = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        name = f"bilinear_{src}_{w}x{h}.rgb"
        save_bytes(name, out.tobytes())
        manifest["bilinear"].append({"source": src + (".png" if src.startswith("png") else ".jpg"),
                                     "width": w, "height": h, "expected": name})
        pil = np.asarray(Image.fromarray(img).resize((w, h), Image.BICUBIC))
        name = f"bicubic_{src}_{w}x{h}.rgb"
        save_bytes(name, pil.tobytes())
        manifest["bicubic"].append({"source": src + (".png" if src.startswith("png") else ".jpg"),
                                    "width": w, "height": h, "expected": name})
    # Sweeps: CRC32 of outputs over many sizes on synthetic images the Swift test rebuilds.
    lin, cub = [], []
    fixed = [(1333, 800, 640, 480), (640, 480, 1333, 800), (1000, 750, 1333, 1000), (800, 600, 400, 300),
             (1920, 1080, 1333, 750), (7, 5, 3, 2), (5, 7, 10, 14), (2, 2, 1, 1), (1, 9, 4, 3), (300, 2, 150, 1),
             (256, 256, 128, 129), (255, 255, 127, 127), (500, 375, 256, 192), (3, 500, 2, 250)]
    rand = []
    for _ in range(120):
        sw, sh = (int(v) for v in rng.integers(1, 160, 2))
        mode = rng.integers(0, 4)
        if mode == 0:
            dw, dh = (int(v) for v in rng.integers(1, 320, 2))
        elif mode == 1:
            dw, dh = max(1, sw // 2), max(1, sh // 2)
            sw, sh = dw * 2, dh * 2
        elif mode == 2:
            dw, dh = max(1, int(sw * rng.uniform(0.3, 0.9))), max(1, int(sh * rng.uniform(0.3, 0.9)))
        else:
            dw, dh = int(sw * rng.integers(2, 5)), int(sh * rng.integers(1, 4))
        rand.append((sw, sh, dw, dh))
    for sw, sh, dw, dh in fixed + rand:
        img = synth(sw, sh)
        out = cv2.resize(img, (dw, dh), interpolation=cv2.INTER_LINEAR)
        lin.append([sw, sh, dw, dh, zlib.crc32(out.tobytes())])
        if sw * sh <= 2_000_000:
            pil = np.asarray(Image.fromarray(img).resize((dw, dh), Image.BICUBIC))
            cub.append([sw, sh, dw, dh, zlib.crc32(pil.tobytes())])
    # Pass order: Pillow 13.0 goes vertical-first when (H - h) > 2 (W - w) and H shrinks.
    for sw, sh, dw, dh in [(2, 300, 3, 100), (1, 250, 2, 7), (3, 400, 3, 399), (40, 30, 40, 20),
                           (40, 30, 57, 13), (3, 400, 2, 100), (46, 49, 41, 15),
                           (51, 28, 20, 1), (60, 200, 30, 100), (200, 100, 150, 40)]:
        pil = np.asarray(Image.fromarray(synth(sw, sh)).resize((dw, dh), Image.BICUBIC))
        cub.append([sw, sh, dw, dh, zlib.crc32(pil.tobytes())])
    manifest["sweeps"] = {"bilinear": lin, "bicubic": cub,
                          "synth_check": [zlib.crc32(synth(37, 29).tobytes())]}


def mmcv_imnormalize(bgr, mean, std, to_rgb):
    """mmcv.image.photometric.imnormalize_ on a copy (float32, cv2 subtract/multiply)."""
    img = bgr.copy().astype(np.float32)
    mean = np.float64(np.array(mean).reshape(1, -1))
    stdinv = 1 / np.float64(np.array(std).reshape(1, -1))
    if to_rgb:
        cv2.cvtColor(img, cv2.COLOR_BGR2RGB, img)
    cv2.subtract(img, mean, img)
    cv2.multiply(img, stdinv, img)
    return img


def torchvision_eval(rgb, crop):
    """timm/DeiT eval transform, as torchvision computes it on a PIL image."""
    im = Image.fromarray(rgb)
    size = int(crop / 0.875)
    w, h = im.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
    im = im.resize((nw, nh), Image.BICUBIC)
    top = int(round((nh - crop) / 2.0))
    left = int(round((nw - crop) / 2.0))
    arr = np.asarray(im)[top:top + crop, left:left + crop]
    t = arr.astype(np.float32).transpose(2, 0, 1) / np.float32(255)
    mean = np.array([0.485, 0.456, 0.406], np.float32)[:, None, None]
    std = np.array([0.229, 0.224, 0.225], np.float32)[:, None, None]
    return ((t - mean) / std).astype(np.float32)


def cross_check(bgr):
    """When mmcv / torchvision are importable, the transcriptions above must equal them."""
    checked = {}
    try:
        import mmcv
    except Exception:
        mmcv = None
    if mmcv is not None:
        for to_rgb, mean, std in [(True, [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
                                  (False, [103.53, 116.28, 123.675], [1.0, 1.0, 1.0])]:
            want = mmcv.imnormalize(bgr, np.array(mean), np.array(std), to_rgb)
            assert np.array_equal(want, mmcv_imnormalize(bgr, mean, std, to_rgb))
        for w, h in [(640, 480), (97, 71), (1000, 1), (800, 533)]:
            factor = min(1333 / max(h, w), 800 / min(h, w))
            assert mmcv.rescale_size((w, h), (1333, 800)) == (int(w * factor + 0.5), int(h * factor + 0.5))
        checked["mmcv"] = mmcv.__version__
    try:
        import warnings
        warnings.filterwarnings("ignore")
        import torchvision
        from torchvision import transforms as T
    except Exception:
        torchvision = None
    if torchvision is not None:
        rgb = np.ascontiguousarray(bgr[..., ::-1])
        for crop in (32, 224):
            tf = T.Compose([T.Resize(int(crop / 0.875), interpolation=T.InterpolationMode.BICUBIC),
                            T.CenterCrop(crop), T.ToTensor(),
                            T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))])
            assert np.array_equal(tf(Image.fromarray(rgb)).numpy(), torchvision_eval(rgb, crop))
        checked["torchvision"] = torchvision.__version__
    return checked


def make_tensors():
    src = "jpeg_baseline420.jpg"
    bgr = cv2.imread(path(src), cv2.IMREAD_COLOR)
    manifest["cross_checked"] = cross_check(bgr)
    for to_rgb, mean, std in [(True, [123.675, 116.28, 103.53], [58.395, 57.12, 57.375]),
                              (False, [103.53, 116.28, 123.675], [1.0, 1.0, 1.0])]:
        out = mmcv_imnormalize(bgr, mean, std, to_rgb).transpose(2, 0, 1)
        name = f"normalize_{'rgb' if to_rgb else 'bgr'}.f32"
        save_bytes(name, np.ascontiguousarray(out).astype("<f4").tobytes())
        manifest["normalize"].append({"source": src, "mean": mean, "std": std, "to_rgb": to_rgb,
                                      "expected": name})
    for src, crop in [("png_rgb8.png", 32), ("jpeg_progressive444.jpg", 56), ("jpeg_exif6.jpg", 40)]:
        t = torchvision_eval(imread_rgb(src), crop)
        name = f"imagenet_{src.rsplit('.', 1)[0]}_{crop}.f32"
        save_bytes(name, t.astype("<f4").tobytes())
        manifest["imagenet"].append({"source": src, "crop": crop, "expected": name})
    t = torchvision_eval(imread_rgb("jpeg_progressive.jpg"), 224)
    manifest["imagenet"].append({"source": "jpeg_progressive.jpg", "crop": 224,
                                 "crc32": zlib.crc32(t.astype("<f4").tobytes())})
    for w, h, scale in [(640, 480, (1333, 800)), (480, 640, (1333, 800)), (1333, 800, (1333, 800)),
                        (97, 71, (2048, 512)), (500, 375, (1333, 800)), (1000, 1, (1333, 800)),
                        (37, 29, (512, 2048)), (333, 200, (600, 1000)), (800, 533, (1333, 800))]:
        factor = min(max(scale) / max(h, w), min(scale) / min(h, w))
        manifest["rescale"].append({"width": w, "height": h, "scale": list(scale),
                                    "expected": [int(w * float(factor) + 0.5), int(h * float(factor) + 0.5)]})


def main():
    if not cv2.__version__.startswith("4."):
        print(f"warning: cv2 {cv2.__version__}; the committed fixtures were made with 4.10 "
              "(jpeg_exif6_xmp_first differs under 5.x)", file=sys.stderr)
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    make_pngs()
    make_jpegs()
    make_bad()
    make_resizes()
    make_tensors()
    manifest["versions"] = {"cv2": cv2.__version__, "Pillow": PIL.__version__, "numpy": np.__version__,
                            "python": sys.version.split()[0], "seed": SEED}
    with open(path("manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    total = sum(os.path.getsize(path(n)) for n in os.listdir(OUT))
    print(f"cross-checked against {manifest['cross_checked'] or 'nothing (mmcv, torchvision not importable)'}")
    print(f"cv2 {cv2.__version__}, Pillow {PIL.__version__}, numpy {np.__version__}: "
          f"{len(os.listdir(OUT))} files, {total / 1024:.0f} KiB in {OUT}")
    for b in manifest["bad"]:
        print(f"  bad file {b['file']}: cv2.imread {'decodes it' if b['cv2_decodes'] else 'fails'}")


if __name__ == "__main__":
    main()
