#!/usr/bin/env python3
"""Seed corpora for the fuzz targets in tests/fuzz (python3 standard library only).

    make_corpus.py OUT_DIR

writes OUT_DIR/fuzz_safetensors/ (valid safetensors files and the malformed cases of
docs/reliability.md items 1-3 and 5) and OUT_DIR/fuzz_image/ (small valid PNGs and JPEGs made
here -- a PNG writer with every filter type, bit depth, colour type and Adam7 interlacing, and a
baseline/progressive JPEG encoder -- plus truncated, corrupted and huge-dimension variants).
The output is deterministic, so re-running it does not grow a corpus.
"""
import collections
import json
import math
import os
import random
import struct
import sys
import zlib


# ---------------------------------------------------------------- safetensors

def st_file(tensors, metadata=None, pad=True, header_override=None, trailing=b""):
    """tensors: list of (name, dtype, shape, data bytes); offsets follow the list order."""
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    data = b""
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = header_override if header_override is not None else json.dumps(header).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text)) + text + data + trailing


def st_raw(header_text, data=b""):
    if isinstance(header_text, str):
        header_text = header_text.encode()
    return struct.pack("<Q", len(header_text)) + header_text + data


def f32(*values):
    return struct.pack("<%df" % len(values), *values)


def safetensors_seeds():
    seeds = {}
    # valid
    seeds["valid_f32_2x3"] = st_file([("w", "F32", [2, 3], f32(1, 2, 3, 4, 5, 6))])
    seeds["valid_all_dtypes"] = st_file([
        ("a.f64", "F64", [2], struct.pack("<2d", 1.5, -2.0)),
        ("b.i64", "I64", [1, 2], struct.pack("<2q", -1, 1 << 40)),
        ("c.f32", "F32", [3], f32(0.0, -0.0, 3.25)),
        ("d.i32", "I32", [2, 1], struct.pack("<2i", 7, -7)),
        ("e.f16", "F16", [2, 2], struct.pack("<4H", 0x3c00, 0xbc00, 0x7bff, 0x0001)),
        ("f.bf16", "BF16", [3], struct.pack("<3H", 0x3f80, 0xc000, 0x0001)),
        ("g.u8", "U8", [5], bytes([0, 1, 127, 128, 255])),
    ], metadata={"format": "pt", "note": "seed"})
    seeds["valid_scalar"] = st_file([("s", "F32", [], f32(42.0))])
    seeds["valid_empty_tensors"] = st_file([
        ("empty0", "F32", [0], b""), ("empty1", "F32", [3, 0, 2], b""), ("x", "U8", [2], b"\x01\x02"),
        ("empty2", "I64", [0, 5], b"")])
    seeds["valid_no_tensors"] = st_file([])
    seeds["valid_only_metadata"] = st_file([], metadata={"k": "v", "": ""})
    seeds["valid_unaligned"] = st_file([("u", "U8", [3], b"abc"), ("f", "F32", [1], f32(1.0))], pad=False)
    seeds["valid_nan_inf"] = st_file([("bad", "F32", [3], f32(float("nan"), float("inf"), 1.0)),
                                      ("h", "F16", [1], struct.pack("<H", 0x7c00))])
    seeds["valid_4d"] = st_file([("conv.weight", "F32", [2, 1, 2, 2], f32(*range(8))),
                                 ("conv.bias", "F32", [2], f32(0.5, -0.5))])
    seeds["valid_unicode_names"] = st_file([("\u00e9\u4e2d.weight", "U8", [1], b"\x05")],
                                           metadata={"\u00fc": "\u2603"})
    # malformed: sizes
    seeds["bad_empty"] = b""
    seeds["bad_short"] = b"\x05\x00\x00"
    seeds["bad_header_len_huge"] = struct.pack("<Q", 1 << 62) + b"{}"
    seeds["bad_header_len_over_limit"] = struct.pack("<Q", 100_000_001) + b"{}"
    seeds["bad_header_len_past_end"] = struct.pack("<Q", 64) + b'{"a":1}'
    seeds["bad_truncated_data"] = seeds["valid_f32_2x3"][:-5]
    seeds["bad_truncated_header"] = seeds["valid_all_dtypes"][:40]
    # malformed: header text
    seeds["bad_not_json"] = st_raw("this is not json")
    seeds["bad_not_utf8"] = st_raw(b'{"\xff\xfe": {"dtype": "U8", "shape": [0], "data_offsets": [0, 0]}}')
    seeds["bad_overlong_utf8"] = st_raw(b'{"\xc0\xaf": 1}')
    seeds["bad_json_array"] = st_raw("[1, 2, 3]")
    seeds["bad_json_deep"] = st_raw("[" * 200 + "]" * 200)
    seeds["bad_duplicate_names"] = st_raw(
        '{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},'
        ' "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}', b"xy")
    seeds["bad_duplicate_field"] = st_raw(
        '{"a": {"dtype": "U8", "dtype": "F32", "shape": [1], "data_offsets": [0, 1]}}', b"x")
    seeds["bad_metadata_not_map"] = st_raw('{"__metadata__": {"k": 1}}')
    seeds["bad_metadata_array"] = st_raw('{"__metadata__": ["k"]}')
    seeds["bad_unknown_dtype"] = st_raw('{"a": {"dtype": "F8_E4M3", "shape": [1], "data_offsets": [0, 1]}}', b"x")
    seeds["bad_dtype_not_string"] = st_raw('{"a": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}}', b"xxxx")
    seeds["bad_missing_field"] = st_raw('{"a": {"dtype": "U8", "shape": [1]}}', b"x")
    seeds["bad_extra_field"] = st_raw(
        '{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "x": 0}}', b"x")
    seeds["bad_entry_not_object"] = st_raw('{"a": [0, 1]}', b"x")
    seeds["bad_empty_name"] = st_raw('{"": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}', b"x")
    # malformed: shapes and offsets
    seeds["bad_negative_shape"] = st_raw('{"a": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', b"xxxx")
    seeds["bad_float_shape"] = st_raw('{"a": {"dtype": "F32", "shape": [1.0], "data_offsets": [0, 4]}}', b"xxxx")
    seeds["bad_huge_shape"] = st_raw(
        '{"a": {"dtype": "F32", "shape": [4294967296, 4294967296], "data_offsets": [0, 4]}}', b"xxxx")
    seeds["bad_shape_overflow_u64"] = st_raw(
        '{"a": {"dtype": "F64", "shape": [18446744073709551615], "data_offsets": [0, 8]}}', b"x" * 8)
    seeds["bad_shape_2p53"] = st_raw(
        '{"a": {"dtype": "U8", "shape": [9007199254740993], "data_offsets": [0, 1]}}', b"x")
    seeds["bad_zero_times_huge"] = st_raw(
        '{"a": {"dtype": "F32", "shape": [0, 9007199254740992, 9007199254740992], "data_offsets": [0, 0]}}')
    seeds["bad_wrong_dtype_size"] = st_raw('{"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 6]}}', b"x" * 6)
    seeds["bad_offsets_backwards"] = st_raw('{"a": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}}', b"x" * 4)
    seeds["bad_offsets_past_end"] = st_raw('{"a": {"dtype": "U8", "shape": [8], "data_offsets": [0, 8]}}', b"x" * 4)
    seeds["bad_offsets_huge"] = st_raw(
        '{"a": {"dtype": "U8", "shape": [1], "data_offsets": [18446744073709551615, 0]}}', b"x")
    seeds["bad_offsets_three"] = st_raw('{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}}', b"x")
    seeds["bad_overlap"] = st_raw(
        '{"a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},'
        ' "b": {"dtype": "U8", "shape": [2], "data_offsets": [1, 3]}}', b"xyz")
    seeds["bad_hole"] = st_raw(
        '{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},'
        ' "b": {"dtype": "U8", "shape": [1], "data_offsets": [2, 3]}}', b"xyz")
    seeds["bad_trailing_bytes"] = st_file([("w", "F32", [1], f32(1.0))], trailing=b"junk")
    # other formats renamed
    seeds["bad_zip"] = b"PK\x03\x04" + b"\x00" * 40
    seeds["bad_hdf5"] = b"\x89HDF\r\n\x1a\n" + b"\x00" * 40
    seeds["bad_pickle"] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01u."
    seeds["bad_npy"] = b"\x93NUMPY\x01\x00v\x00{'descr': '<f4'}"
    return seeds


# ---------------------------------------------------------------- PNG

def png_chunk(kind, payload):
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def filter_rows(rows, bpp, first_filter):
    """rows: list of bytes (packed scanlines); every filter type in turn from first_filter."""
    out = bytearray()
    prev = bytes(len(rows[0])) if rows else b""
    for i, row in enumerate(rows):
        ft = (first_filter + i) % 5
        out.append(ft)
        for x, v in enumerate(row):
            a = row[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            pred = [0, a, b, (a + b) // 2, paeth(a, b, c)][ft]
            out.append((v - pred) & 0xFF)
        prev = row
    return bytes(out)


CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def pack_row(samples, depth):
    if depth == 8:
        return bytes(samples)
    if depth == 16:
        return b"".join(struct.pack(">H", s) for s in samples)
    per = 8 // depth
    out = bytearray()
    for i in range(0, len(samples), per):
        byte = 0
        for k in range(per):
            s = samples[i + k] if i + k < len(samples) else 0
            byte |= (s & ((1 << depth) - 1)) << (8 - depth * (k + 1))
        out.append(byte)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def make_png(width, height, color_type=2, depth=8, interlace=False, palette=None, trns=None,
             first_filter=0, extra_chunks=(), palette_kind=b"PLTE"):
    ch = CHANNELS[color_type]
    maxv = (1 << depth) - 1
    if color_type == 3:
        maxv = len(palette) // 3 - 1

    def sample(x, y, c):
        return ((x * 37 + y * 91 + c * 53 + x * y) % (maxv + 1))

    bpp = max(1, ch * depth // 8)
    raw = b""
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for x0, y0, dx, dy in passes:
        xs = list(range(x0, width, dx))
        ys = list(range(y0, height, dy))
        if not xs or not ys:
            continue
        rows = [pack_row([sample(x, y, c) for x in xs for c in range(ch)], depth) for y in ys]
        raw += filter_rows(rows, bpp, first_filter)
    out = b"\x89PNG\r\n\x1a\n"
    out += png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, int(interlace)))
    for kind, payload in extra_chunks:
        out += png_chunk(kind, payload)
    if palette is not None:
        out += png_chunk(palette_kind, bytes(palette))
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    z = zlib.compress(raw, 9)
    half = len(z) // 2  # two IDAT chunks: the decoder must join them
    out += png_chunk(b"IDAT", z[:half]) + png_chunk(b"IDAT", z[half:])
    out += png_chunk(b"IEND", b"")
    return out


def png_with_ihdr(width, height, depth=8, color_type=2, idat=b""):
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, color_type, 0, 0, 0))
            + png_chunk(b"IDAT", zlib.compress(idat)) + png_chunk(b"IEND", b""))


# ---------------------------------------------------------------- JPEG

ZIGZAG = sorted(((x, y) for x in range(8) for y in range(8)),
                key=lambda p: (p[0] + p[1], -p[1] if (p[0] + p[1]) % 2 else p[1]))
# ZIGZAG[k] = (row + col ordering): position k of the zig-zag scan as (u, v) with index v * 8 + u.
ZIGZAG = [v * 8 + u for (u, v) in [(p[1], p[0]) for p in ZIGZAG]]

COS = [[math.cos((2 * x + 1) * u * math.pi / 16) for x in range(8)] for u in range(8)]


def fdct(block):
    out = [0.0] * 64
    for v in range(8):
        for u in range(8):
            cu = 1 / math.sqrt(2) if u == 0 else 1.0
            cv = 1 / math.sqrt(2) if v == 0 else 1.0
            s = 0.0
            for y in range(8):
                for x in range(8):
                    s += block[y * 8 + x] * COS[u][x] * COS[v][y]
            out[v * 8 + u] = 0.25 * cu * cv * s
    return out


class BitWriter:
    def __init__(self):
        self.out = bytearray()
        self.acc = 0
        self.n = 0

    def put(self, code, length):
        for i in range(length - 1, -1, -1):
            self.acc = (self.acc << 1) | ((code >> i) & 1)
            self.n += 1
            if self.n == 8:
                self.out.append(self.acc)
                if self.acc == 0xFF:
                    self.out.append(0)
                self.acc = self.n = 0

    def flush(self):
        while self.n:
            self.put(1, 1)


# Simple Huffman tables that stay valid: DC, 12 symbols of 4 bits; AC, all 162 symbols of 8 bits.
DC_SYMBOLS = list(range(12))
AC_SYMBOLS = [0x00, 0xF0] + [(r << 4) | s for r in range(16) for s in range(1, 11)]


def huff_codes(symbols, length):
    return {s: (i, length) for i, s in enumerate(symbols)}


DC_CODES = huff_codes(DC_SYMBOLS, 4)
AC_CODES = huff_codes(AC_SYMBOLS, 8)


def dht(cls, ident, symbols, length):
    bits = [0] * 16
    bits[length - 1] = len(symbols)
    body = bytes([(cls << 4) | ident]) + bytes(bits) + bytes(symbols)
    return b"\xff\xc4" + struct.pack(">H", len(body) + 2) + body


def magnitude(v):
    size = abs(v).bit_length()
    bits = v if v >= 0 else v + (1 << size) - 1
    return size, bits


def encode_dc(w, diff):
    size, bits = magnitude(diff)
    w.put(*DC_CODES[size])
    if size:
        w.put(bits, size)


def encode_ac(w, coefs, start=1):
    run = 0
    last = max([k for k in range(start, 64) if coefs[k]] or [start - 1])
    for k in range(start, last + 1):
        c = coefs[k]
        if c == 0:
            run += 1
            continue
        while run > 15:
            w.put(*AC_CODES[0xF0])
            run -= 16
        size, bits = magnitude(c)
        w.put(*AC_CODES[(run << 4) | size])
        w.put(bits, size)
        run = 0
    if last < 63:
        w.put(*AC_CODES[0x00])


def make_jpeg(width, height, gray=False, subsample=False, restart=0, progressive=False, quality_step=2):
    if progressive:
        subsample = False  # non-interleaved scans are written for 1x1 sampling only
    ncomp = 1 if gray else 3
    hmax = 2 if (subsample and not gray) else 1
    mcu = 8 * hmax
    mx, my = -(-width // mcu), -(-height // mcu)

    def rgb(x, y):
        x, y = min(x, width - 1), min(y, height - 1)
        return ((x * 255) // max(1, width - 1), (y * 255) // max(1, height - 1), ((x + y) * 40) % 256)

    def comp_value(c, x, y):
        r, g, b = rgb(x, y)
        if gray or c == 0:
            return 0.299 * r + 0.587 * g + 0.114 * b
        if c == 1:
            return -0.1687 * r - 0.3313 * g + 0.5 * b + 128
        return 0.5 * r - 0.4187 * g - 0.0813 * b + 128

    quant = [[min(255, 2 + k * quality_step // (1 + c)) for k in range(64)] for c in range(2)]

    def block(c, bx, by, scale):  # block at block coordinates (bx, by) of component c
        vals = []
        for y in range(8):
            for x in range(8):
                if scale == 1:
                    vals.append(comp_value(c, bx * 8 + x, by * 8 + y) - 128)
                else:  # average of the 2x2 full-resolution pixels
                    px, py = (bx * 8 + x) * 2, (by * 8 + y) * 2
                    vals.append(sum(comp_value(c, px + i, py + j) for i in (0, 1) for j in (0, 1)) / 4 - 128)
        d = fdct(vals)
        q = quant[0 if c == 0 else 1]
        return [int(round(d[ZIGZAG[k]] / q[k])) for k in range(64)]

    samp = [(hmax, hmax)] + [(1, 1)] * (ncomp - 1)
    # coefficients of each component's blocks, by block coordinates over the MCU-padded grid
    coefs = []
    for c in range(ncomp):
        h, v = samp[c]
        scale = hmax // h
        coefs.append({(bx, by): block(c, bx, by, scale) for by in range(my * v) for bx in range(mx * h)})

    out = b"\xff\xd8"
    out += b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    for t in range(1 if gray else 2):
        body = bytes([t]) + bytes(quant[t][k] for k in range(64))
        out += b"\xff\xdb" + struct.pack(">H", len(body) + 2) + body
    sof = struct.pack(">BHHB", 8, height, width, ncomp)
    for c in range(ncomp):
        sof += bytes([c + 1, (samp[c][0] << 4) | samp[c][1], 0 if c == 0 else 1])
    out += (b"\xff\xc2" if progressive else b"\xff\xc0") + struct.pack(">H", len(sof) + 2) + sof
    out += dht(0, 0, DC_SYMBOLS, 4) + dht(1, 0, AC_SYMBOLS, 8)
    if restart:
        out += b"\xff\xdd" + struct.pack(">HH", 4, restart)

    def sos(comps, ss, se):
        body = bytes([len(comps)]) + b"".join(bytes([c + 1, 0]) for c in comps) + bytes([ss, se, 0])
        return b"\xff\xda" + struct.pack(">H", len(body) + 2) + body

    def scan(units, emit):
        """units: list of MCUs, each a list of (component, block coords); restart markers between."""
        w = BitWriter()
        data = bytearray()
        pred = [0] * ncomp
        for i, unit in enumerate(units):
            if restart and i and i % restart == 0:
                w.flush()
                data += w.out + bytes([0xFF, 0xD0 + (i // restart - 1) % 8])
                w = BitWriter()
                pred = [0] * ncomp
            for c, key in unit:
                pred[c] = emit(w, c, coefs[c][key], pred[c])
        w.flush()
        return bytes(data + w.out)

    def emit_full(w, c, co, p):
        encode_dc(w, co[0] - p)
        encode_ac(w, co)
        return co[0]

    def emit_dc(w, c, co, p):
        encode_dc(w, co[0] - p)
        return co[0]

    def emit_ac(w, c, co, p):
        encode_ac(w, co)
        return p

    interleaved = []
    for by in range(my):
        for bx in range(mx):
            unit = []
            for c in range(ncomp):
                h, v = samp[c]
                unit += [(c, (bx * h + i, by * v + j)) for j in range(v) for i in range(h)]
            interleaved.append(unit)
    if not progressive:
        out += sos(list(range(ncomp)), 0, 63) + scan(interleaved, emit_full)
    else:
        out += sos(list(range(ncomp)), 0, 0) + scan(interleaved, emit_dc)
        bw, bh = -(-width // 8), -(-height // 8)  # a non-interleaved scan covers the image only
        for c in range(ncomp):
            units = [[(c, (bx, by))] for by in range(bh) for bx in range(bw)]
            out += sos([c], 1, 63) + scan(units, emit_ac)
    return out + b"\xff\xd9"


def jpeg_sof(width, height, ncomp=3):
    """A JPEG whose frame header declares the given size, with no real scan data."""
    sof = struct.pack(">BHHB", 8, height, width, ncomp) + b"".join(bytes([c + 1, 0x11, 0]) for c in range(ncomp))
    q = b"\x00" + bytes([1] * 64)
    return (b"\xff\xd8" + b"\xff\xdb" + struct.pack(">H", 67) + q + b"\xff\xc0" + struct.pack(">H", len(sof) + 2)
            + sof + dht(0, 0, DC_SYMBOLS, 4) + dht(1, 0, AC_SYMBOLS, 8) + b"\xff\xda\x00\x0c\x03\x01\x00\x02\x00\x03\x00\x00\x3f\x00"
            + b"\x00" * 16 + b"\xff\xd9")


def image_seeds():
    seeds = {}
    pal = [v for i in range(16) for v in ((i * 16) % 256, (i * 40) % 256, (i * 90) % 256)]
    seeds["png_rgb_5x3"] = make_png(5, 3)
    seeds["png_rgb_1x1"] = make_png(1, 1)
    seeds["png_gray_7x1"] = make_png(7, 1, color_type=0)
    seeds["png_gray_1x9_filters"] = make_png(1, 9, color_type=0, first_filter=1)
    seeds["png_gray1bit_13x3"] = make_png(13, 3, color_type=0, depth=1)
    seeds["png_gray2bit_6x2"] = make_png(6, 2, color_type=0, depth=2, first_filter=3)
    seeds["png_gray4bit_5x5"] = make_png(5, 5, color_type=0, depth=4, first_filter=4)
    seeds["png_gray16_4x3"] = make_png(4, 3, color_type=0, depth=16)
    seeds["png_graya_3x3"] = make_png(3, 3, color_type=4, first_filter=2)
    seeds["png_rgba_4x4"] = make_png(4, 4, color_type=6, first_filter=4)
    seeds["png_rgba16_3x2"] = make_png(3, 2, color_type=6, depth=16, first_filter=1)
    seeds["png_rgb16_2x2"] = make_png(2, 2, color_type=2, depth=16, first_filter=3)
    seeds["png_palette_6x4"] = make_png(6, 4, color_type=3, palette=pal)
    seeds["png_palette4bit_trns_9x2"] = make_png(9, 2, color_type=3, depth=4, palette=pal, trns=bytes(range(0, 240, 15)))
    seeds["png_rgb_trns_3x3"] = make_png(3, 3, color_type=2, trns=struct.pack(">HHH", 37, 91, 53))
    seeds["png_gray_trns_4x2"] = make_png(4, 2, color_type=0, trns=struct.pack(">H", 0))
    seeds["png_interlaced_rgb_11x9"] = make_png(11, 9, interlace=True, first_filter=2)
    seeds["png_interlaced_gray_3x2"] = make_png(3, 2, color_type=0, interlace=True)
    seeds["png_interlaced_palette_9x9"] = make_png(9, 9, color_type=3, depth=2, palette=pal[:12], interlace=True)
    seeds["png_interlaced_rgba16_5x5"] = make_png(5, 5, color_type=6, depth=16, interlace=True, first_filter=4)
    seeds["png_ancillary_chunks"] = make_png(2, 2, extra_chunks=[(b"gAMA", struct.pack(">I", 45455)),
                                                                 (b"tEXt", b"Comment\x00seed")])
    seeds["bad_png_cgbi_apple"] = b"\x89PNG\r\n\x1a\n" + png_chunk(b"CgBI", b"\x50\x00\x20\x02") + make_png(2, 2)[8:]
    # JPEG
    seeds["jpeg_rgb_8x8"] = make_jpeg(8, 8)
    seeds["jpeg_rgb_13x7"] = make_jpeg(13, 7)
    seeds["jpeg_gray_9x17"] = make_jpeg(9, 17, gray=True)
    seeds["jpeg_420_21x19"] = make_jpeg(21, 19, subsample=True)
    seeds["jpeg_1x1"] = make_jpeg(1, 1)
    seeds["jpeg_restart_24x16"] = make_jpeg(24, 16, restart=2)
    seeds["jpeg_420_restart_33x17"] = make_jpeg(33, 17, subsample=True, restart=1)
    seeds["jpeg_progressive_rgb_12x10"] = make_jpeg(12, 10, progressive=True)
    seeds["jpeg_progressive_gray_17x3"] = make_jpeg(17, 3, gray=True, progressive=True)
    # malformed
    good_png, good_jpeg = seeds["png_rgb_5x3"], seeds["jpeg_rgb_13x7"]
    seeds["bad_png_truncated_half"] = good_png[: len(good_png) // 2]
    seeds["bad_png_no_iend"] = good_png[:-12]
    seeds["bad_png_signature_only"] = good_png[:8]
    crc = bytearray(good_png)
    crc[40] ^= 0x10
    seeds["bad_png_crc"] = bytes(crc)
    seeds["bad_png_huge_30000"] = png_with_ihdr(30000, 30000)
    seeds["bad_png_huge_2p31"] = png_with_ihdr(0x7FFFFFFF, 1)
    seeds["bad_png_zero_size"] = png_with_ihdr(0, 5)
    seeds["bad_png_bad_depth"] = png_with_ihdr(2, 2, depth=7)
    seeds["bad_png_bad_colortype"] = png_with_ihdr(2, 2, color_type=5)
    seeds["bad_png_short_idat"] = png_with_ihdr(64, 64, idat=b"\x00" * 10)
    seeds["png_idat_inflates_200x_too_much"] = png_with_ihdr(100, 100, color_type=0, idat=b"\x00" * 2_000_000)
    seeds["bad_png_palette_missing"] = make_png(4, 4, color_type=3, palette=pal, palette_kind=b"PLTx")
    seeds["bad_jpeg_truncated_scan"] = good_jpeg[: len(good_jpeg) - 20]
    seeds["bad_jpeg_no_eoi"] = good_jpeg[:-2]
    seeds["bad_jpeg_soi_only"] = b"\xff\xd8\xff"
    seeds["bad_jpeg_huge_65535"] = jpeg_sof(65535, 65535)
    seeds["bad_jpeg_zero_height"] = jpeg_sof(16, 0)
    seeds["jpeg_cmyk_no_scan_data_8x8"] = jpeg_sof(8, 8, ncomp=4)
    seeds["bad_jpeg_huffman_overflow"] = (b"\xff\xd8\xff\xc4\x00\x13\x00" + bytes([255] * 16) + b"\xff\xd9")
    corrupt = bytearray(good_jpeg)
    for k in range(len(corrupt) - 40, len(corrupt) - 4, 5):
        corrupt[k] ^= 0x5A
    seeds["bad_jpeg_corrupt_scan"] = bytes(corrupt)
    seeds["bad_gif"] = b"GIF89a\x01\x00\x01\x00\x00\x00\x00;"
    seeds["bad_text"] = b"hello, this is not an image\n"
    seeds["bad_empty"] = b""
    return seeds


# ---------------------------------------------------------------- DICOM

# Hand-written DICOM Part 10 files (PS3.10 and PS3.5): the preamble, "DICM", the file meta
# information (explicit VR little endian), then the data set in the transfer syntax: implicit or
# explicit VR, little or big endian, deflated, or with encapsulated pixel data (JPEG baseline from
# make_jpeg above, JPEG lossless SV1, RLE and a JPEG 2000 codestream written here).
DICOM_LONG_VRS = {"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"}
DICOM_UNDEFINED = 0xFFFFFFFF
TS_IMPLICIT = "1.2.840.10008.1.2"
TS_EXPLICIT = "1.2.840.10008.1.2.1"
TS_DEFLATED = "1.2.840.10008.1.2.1.99"
TS_BIG = "1.2.840.10008.1.2.2"
TS_JPEG_BASELINE = "1.2.840.10008.1.2.4.50"
TS_JPEG_LOSSLESS = "1.2.840.10008.1.2.4.70"
TS_JPEG_LS = "1.2.840.10008.1.2.4.80"
TS_J2K = "1.2.840.10008.1.2.4.90"
TS_RLE = "1.2.840.10008.1.2.5"


def dcm_value(vr, value, big):
    """An element's value bytes: ints are packed by VR, strings padded to even length."""
    e = ">" if big else "<"
    if isinstance(value, int):
        return struct.pack(e + {"US": "H", "SS": "h", "UL": "I", "SL": "i"}[vr], value)
    if isinstance(value, str):
        value = value.encode("ascii")
        return value + (b"\0" if vr == "UI" else b" ") * (len(value) % 2)
    return value


def dcm_element(group, element, vr, value, big=False, implicit=False, length=None):
    """One data element; `length` overrides the value's length (DICOM_UNDEFINED for sequences)."""
    e = ">" if big else "<"
    value = dcm_value(vr, value, big)
    n = len(value) if length is None else length
    head = struct.pack(e + "HH", group, element)
    if implicit:
        return head + struct.pack(e + "I", n) + value
    if vr in DICOM_LONG_VRS:
        return head + vr.encode() + b"\0\0" + struct.pack(e + "I", n) + value
    return head + vr.encode() + struct.pack(e + "H", n) + value


def dcm_item(data, big=False, undefined=False):
    e = ">" if big else "<"
    if undefined:
        return struct.pack(e + "HHI", 0xFFFE, 0xE000, DICOM_UNDEFINED) + data + struct.pack(e + "HHI", 0xFFFE, 0xE00D, 0)
    return struct.pack(e + "HHI", 0xFFFE, 0xE000, len(data)) + data


def dcm_sequence_end(big=False):
    return struct.pack((">" if big else "<") + "HHI", 0xFFFE, 0xE0DD, 0)


def dcm_data_set(elements, big=False, implicit=False):
    """elements: (group, element, vr, value[, length]) in any order; written in ascending order."""
    return b"".join(dcm_element(*el[:4], big=big, implicit=implicit, length=el[4] if len(el) > 4 else None)
                    for el in sorted(elements, key=lambda el: (el[0], el[1])))


def dcm_file(ts, data_set, group_length=True, meta_extra=()):
    meta = dcm_data_set([(0x0002, 0x0001, "OB", b"\0\1"), (0x0002, 0x0002, "UI", "1.2.840.10008.5.1.4.1.1.7"),
                         (0x0002, 0x0003, "UI", "1.2.826.0.1.3680043.8.498.77"), (0x0002, 0x0010, "UI", ts),
                         (0x0002, 0x0012, "UI", "1.2.826.0.1.3680043.8.498")] + list(meta_extra))
    if group_length:
        meta = dcm_element(0x0002, 0x0000, "UL", len(meta)) + meta
    return b"\0" * 128 + b"DICM" + meta + data_set


def dcm_pixels(values, bits, signed, big=False):
    code = {8: "b", 16: "h"}[bits]
    data = struct.pack((">" if big else "<") + (code if signed else code.upper()) * len(values), *values)
    return data + b"\0" * (len(data) % 2)


def dcm_image(rows, cols, bits=16, stored=12, signed=False, photometric="MONOCHROME2", pixel_data=None, samples=1,
              values=None, extra=(), big=False, implicit=False, pixel_vr=None, pixel_length=None, no_pixels=False):
    """An image data set (patient "Doe^Jane"); pixel_data bytes, or values packed here."""
    if pixel_data is None:
        if values is None:
            values = [((x * 37 + y * 11) % (1 << stored)) - (1 << (stored - 1) if signed else 0)
                      for y in range(rows) for x in range(cols)]
        pixel_data = dcm_pixels(values, bits, signed, big)
    elements = [(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.7"), (0x0008, 0x0018, "UI", "1.2.826.0.1.3680043.8.498.77"),
                (0x0008, 0x0060, "CS", "CR"), (0x0010, 0x0010, "PN", "Doe^Jane"), (0x0010, 0x0020, "LO", "Doe-4711"),
                (0x0010, 0x0030, "DA", "19700101"),
                (0x0028, 0x0002, "US", samples), (0x0028, 0x0004, "CS", photometric), (0x0028, 0x0010, "US", rows),
                (0x0028, 0x0011, "US", cols), (0x0028, 0x0100, "US", bits), (0x0028, 0x0101, "US", stored),
                (0x0028, 0x0102, "US", stored - 1), (0x0028, 0x0103, "US", 1 if signed else 0)]
    elements += list(extra)
    vr = pixel_vr or ("OB" if bits == 8 else "OW")
    if not no_pixels:
        elements.append((0x7FE0, 0x0010, vr, pixel_data) + ((pixel_length,) if pixel_length is not None else ()))
    return dcm_data_set(elements, big=big, implicit=implicit)


def dcm_encapsulated(fragments, table=b""):
    """Encapsulated pixel data's value: the offset table item, fragment items, the delimiter."""
    out = dcm_item(table)
    for f in fragments:
        out += dcm_item(f + b"\0" * (len(f) % 2))
    return out + dcm_sequence_end()


def jpeg_lossless(width, height, values, precision):
    """JPEG lossless, Process 14, selection value 1 (predictor Ra), one Huffman table in which all
    17 difference categories have 5-bit codes."""
    categories = list(range(17))
    w = BitWriter()
    for y in range(height):
        for x in range(width):
            if x == 0 and y == 0:
                pred = 1 << (precision - 1)
            elif x == 0:
                pred = values[(y - 1) * width]
            else:
                pred = values[y * width + x - 1]
            diff = values[y * width + x] - pred
            size, bits = magnitude(diff)
            w.put(size, 5)
            if 0 < size < 16:
                w.put(bits, size)
    w.flush()
    sof = struct.pack(">BHHB", precision, height, width, 1) + bytes([1, 0x11, 0])
    sos = bytes([1, 1, 0x00, 1, 0, 0])  # one component, table 0, predictor 1, Se 0, Ah/Al 0
    return (b"\xff\xd8" + b"\xff\xc3" + struct.pack(">H", len(sof) + 2) + sof + dht(0, 0, categories, 5)
            + b"\xff\xda" + struct.pack(">H", len(sos) + 2) + sos + bytes(w.out) + b"\xff\xd9")


def j2k_flat(width, height, precision, components=1):
    """A JPEG 2000 codestream of one tile whose only packet is empty: every coefficient is 0, so the
    image decodes to the middle level 2^(precision-1) (reversible 5/3 transform, no decomposition)."""
    siz = struct.pack(">HIIIIIIIIH", 0, width, height, 0, 0, width, height, 0, 0, components)
    siz += bytes([precision - 1, 1, 1]) * components
    cod = bytes([0, 0]) + struct.pack(">H", 1) + bytes([0, 0, 4, 4, 0, 1])
    qcd = bytes([0x40, (precision + 1) << 3])
    data = b"\x00"
    sot = struct.pack(">HIBB", 0, 12 + 2 + len(data), 0, 1)
    return (b"\xff\x4f" + b"\xff\x51" + struct.pack(">H", len(siz) + 2) + siz + b"\xff\x52" + struct.pack(">H", len(cod) + 2)
            + cod + b"\xff\x5c" + struct.pack(">H", len(qcd) + 2) + qcd + b"\xff\x90" + struct.pack(">H", len(sot) + 2)
            + sot + b"\xff\x93" + data + b"\xff\xd9")


def rle_segment(data):
    out = b""
    for i in range(0, len(data), 128):
        chunk = data[i:i + 128]
        out += bytes([len(chunk) - 1]) + chunk
    return out + b"\0" * (len(out) % 2)


def rle_frame(values, bits):
    """DICOM RLE (PS3.5 G): one segment per byte of the sample, most significant first."""
    if bits == 8:
        planes = [bytes(v & 0xFF for v in values)]
    else:
        planes = [bytes((v >> 8) & 0xFF for v in values), bytes(v & 0xFF for v in values)]
    segments = [rle_segment(p) for p in planes]
    offsets, at = [], 64
    for s in segments:
        offsets.append(at)
        at += len(s)
    return struct.pack("<16I", len(segments), *(offsets + [0] * (15 - len(offsets)))) + b"".join(segments)


def dicom_seeds():
    seeds = {}
    window = [(0x0028, 0x1050, "DS", "-700\\40"), (0x0028, 0x1051, "DS", "600\\400"),
              (0x0028, 0x1052, "DS", "-1024"), (0x0028, 0x1053, "DS", "1.5")]
    # Valid files in every transfer syntax written here.
    seeds["explicit_16_12_window"] = dcm_file(TS_EXPLICIT, dcm_image(8, 9, extra=window))
    seeds["explicit_16_full_range"] = dcm_file(TS_EXPLICIT, dcm_image(5, 4, stored=16))
    seeds["explicit_8_mono1"] = dcm_file(TS_EXPLICIT, dcm_image(7, 5, bits=8, stored=8, photometric="MONOCHROME1"))
    seeds["explicit_8_signed_odd"] = dcm_file(TS_EXPLICIT, dcm_image(3, 3, bits=8, stored=8, signed=True))
    seeds["explicit_16_signed_sigmoid"] = dcm_file(TS_EXPLICIT, dcm_image(
        6, 6, signed=True, extra=[(0x0028, 0x1050, "DS", "0"), (0x0028, 0x1051, "DS", "3000"), (0x0028, 0x1056, "CS", "SIGMOID")]))
    seeds["explicit_linear_exact_mono1"] = dcm_file(TS_EXPLICIT, dcm_image(
        4, 6, photometric="MONOCHROME1", extra=[(0x0028, 0x1050, "DS", "100"), (0x0028, 0x1051, "DS", "1"),
                                               (0x0028, 0x1056, "CS", "LINEAR_EXACT")]))
    seeds["explicit_1x1"] = dcm_file(TS_EXPLICIT, dcm_image(1, 1))
    seeds["explicit_no_group_length"] = dcm_file(TS_EXPLICIT, dcm_image(4, 4), group_length=False)
    seeds["implicit_16"] = dcm_file(TS_IMPLICIT, dcm_image(8, 7, implicit=True, extra=window))
    seeds["implicit_8"] = dcm_file(TS_IMPLICIT, dcm_image(5, 5, bits=8, stored=8, implicit=True))
    seeds["big_16_signed"] = dcm_file(TS_BIG, dcm_image(6, 5, signed=True, big=True, extra=window))
    seeds["big_8"] = dcm_file(TS_BIG, dcm_image(4, 6, bits=8, stored=8, big=True))
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = deflate.compress(dcm_image(8, 8, extra=window)) + deflate.flush()
    seeds["deflated_16"] = dcm_file(TS_DEFLATED, body + b"\0" * (len(body) % 2))
    # Sequences: defined and undefined lengths, nested, an icon with its own pixel data, and a
    # CP-246 UN of undefined length holding an implicit VR item.
    inner = dcm_data_set([(0x0008, 0x0100, "SH", "T-D1000"), (0x0008, 0x0102, "SH", "SRT")])
    nested = dcm_data_set([(0x0008, 0x1150, "UI", "1.2.3"), (0x0040, 0xA043, "SQ", dcm_item(inner, undefined=True) + dcm_sequence_end(), DICOM_UNDEFINED)])
    icon = dcm_data_set([(0x0028, 0x0002, "US", 1), (0x0028, 0x0004, "CS", "MONOCHROME2"), (0x0028, 0x0010, "US", 2),
                         (0x0028, 0x0011, "US", 2), (0x0028, 0x0100, "US", 8), (0x0028, 0x0101, "US", 8),
                         (0x0028, 0x0102, "US", 7), (0x0028, 0x0103, "US", 0), (0x7FE0, 0x0010, "OB", b"\1\2\3\4")])
    implicit_item = dcm_data_set([(0x0008, 0x0100, "SH", "X")], implicit=True)
    sequences = [(0x0008, 0x1140, "SQ", dcm_item(nested) + dcm_item(b"")),
                 (0x0008, 0x1155, "SQ", dcm_item(nested, undefined=True) + dcm_sequence_end(), DICOM_UNDEFINED),
                 (0x0009, 0x0010, "LO", "PRIVATE"), (0x0009, 0x1001, "UN", dcm_item(implicit_item, undefined=True) + dcm_sequence_end(), DICOM_UNDEFINED),
                 (0x0088, 0x0200, "SQ", dcm_item(icon)), (0xFFFC, 0xFFFC, "OB", b"\0" * 8)]
    seeds["explicit_sequences"] = dcm_file(TS_EXPLICIT, dcm_image(5, 6, extra=sequences))
    implicit_sequences = [(0x0008, 0x1140, "SQ", dcm_item(dcm_data_set([(0x0008, 0x1150, "UI", "1.2.3")], implicit=True))),
                          (0x0008, 0x1155, "SQ", dcm_item(b"", undefined=True) + dcm_sequence_end(), DICOM_UNDEFINED)]
    seeds["implicit_sequences"] = dcm_file(TS_IMPLICIT, dcm_image(4, 5, implicit=True, extra=implicit_sequences))
    # Encapsulated pixel data.
    gray = make_jpeg(16, 12, gray=True)
    seeds["jpeg_baseline_8"] = dcm_file(TS_JPEG_BASELINE, dcm_image(12, 16, bits=8, stored=8, pixel_vr="OB",
                                                                      pixel_data=dcm_encapsulated([gray]), pixel_length=DICOM_UNDEFINED))
    seeds["jpeg_baseline_two_fragments"] = dcm_file(TS_JPEG_BASELINE, dcm_image(
        12, 16, bits=8, stored=8, pixel_vr="OB", pixel_data=dcm_encapsulated([gray[:100], gray[100:]]), pixel_length=DICOM_UNDEFINED))
    values12 = [(x * 300 + y * 77) % 4096 for y in range(7) for x in range(9)]
    seeds["jpeg_lossless_16_12"] = dcm_file(TS_JPEG_LOSSLESS, dcm_image(
        7, 9, pixel_vr="OB", pixel_data=dcm_encapsulated([jpeg_lossless(9, 7, values12, 12)]), pixel_length=DICOM_UNDEFINED))
    values8 = [(x * 40 + y * 9) % 256 for y in range(6) for x in range(5)]
    seeds["jpeg_lossless_8"] = dcm_file(TS_JPEG_LOSSLESS, dcm_image(
        6, 5, bits=8, stored=8, pixel_vr="OB", pixel_data=dcm_encapsulated([jpeg_lossless(5, 6, values8, 8)]),
        pixel_length=DICOM_UNDEFINED))
    seeds["rle_16"] = dcm_file(TS_RLE, dcm_image(7, 9, pixel_vr="OB", pixel_data=dcm_encapsulated([rle_frame(values12, 16)]),
                                                 pixel_length=DICOM_UNDEFINED))
    seeds["rle_8"] = dcm_file(TS_RLE, dcm_image(6, 5, bits=8, stored=8, pixel_vr="OB",
                                                pixel_data=dcm_encapsulated([rle_frame(values8, 8)]), pixel_length=DICOM_UNDEFINED))
    seeds["j2k_flat_16"] = dcm_file(TS_J2K, dcm_image(6, 7, pixel_vr="OB", pixel_data=dcm_encapsulated([j2k_flat(7, 6, 12)]),
                                                      pixel_length=DICOM_UNDEFINED))
    seeds["j2k_flat_8"] = dcm_file(TS_J2K, dcm_image(5, 4, bits=8, stored=8, pixel_vr="OB",
                                                     pixel_data=dcm_encapsulated([j2k_flat(4, 5, 8)]), pixel_length=DICOM_UNDEFINED))
    jls_header = (b"\xff\xd8\xff\xf7" + struct.pack(">HBHHB", 11, 8, 4, 4, 1) + bytes([1, 0x11, 0])
                  + b"\xff\xda" + struct.pack(">HB", 8, 1) + bytes([1, 0, 0, 0, 0]) + b"\x00" * 6 + b"\xff\xd9")
    seeds["jpeg_ls_garbage_scan"] = dcm_file(TS_JPEG_LS, dcm_image(4, 4, bits=8, stored=8, pixel_vr="OB",
                                                                    pixel_data=dcm_encapsulated([jls_header]), pixel_length=DICOM_UNDEFINED))
    # Refused: the image attributes.
    seeds["bad_multi_frame"] = dcm_file(TS_EXPLICIT, dcm_image(2, 2, values=list(range(8)), extra=[(0x0028, 0x0008, "IS", "2")]))
    seeds["bad_rgb"] = dcm_file(TS_EXPLICIT, dcm_image(2, 2, bits=8, stored=8, photometric="RGB", samples=3, values=list(range(12))))
    seeds["bad_palette"] = dcm_file(TS_EXPLICIT, dcm_image(2, 2, bits=8, stored=8, photometric="PALETTE COLOR"))
    seeds["bad_32_bits"] = dcm_file(TS_EXPLICIT, dcm_image(2, 2, bits=16, stored=12, pixel_data=b"\0" * 16)
                                    .replace(struct.pack("<HH", 0x0028, 0x0100) + b"US\x02\x00\x10\x00",
                                             struct.pack("<HH", 0x0028, 0x0100) + b"US\x02\x00\x20\x00"))
    seeds["bad_no_pixel_data"] = dcm_file(TS_EXPLICIT, dcm_image(2, 2, no_pixels=True))
    seeds["bad_huge_header"] = dcm_file(TS_EXPLICIT, dcm_image(65535, 65535, pixel_data=b"\0" * 8))
    seeds["bad_short_pixels"] = dcm_file(TS_EXPLICIT, dcm_image(4, 4, pixel_data=b"\0" * 10))
    seeds["bad_window"] = dcm_file(TS_EXPLICIT, dcm_image(3, 3, extra=[(0x0028, 0x1050, "DS", "Doe^Jane"), (0x0028, 0x1051, "DS", "0")]))
    seeds["bad_transfer_syntax"] = dcm_file("1.2.840.10008.1.2.4.100", dcm_image(2, 2))
    seeds["bad_transfer_syntax_text"] = dcm_file("Doe^Jane", dcm_image(2, 2))
    # Refused: the encoding.
    good = dcm_image(4, 4)
    seeds["bad_truncated"] = dcm_file(TS_EXPLICIT, good)[:-5]
    seeds["bad_odd_length"] = dcm_file(TS_EXPLICIT, dcm_image(4, 4, extra=[(0x0008, 0x0070, "LO", b"Doe^Jan")]))
    seeds["bad_huge_length"] = dcm_file(TS_EXPLICIT, dcm_image(4, 4, extra=[(0x0008, 0x0070, "UT", b"Doe^Jane", 0xFFFFFFF0)]))
    seeds["bad_undefined_not_sequence"] = dcm_file(TS_EXPLICIT, dcm_image(4, 4, extra=[(0x0008, 0x0070, "UT", b"Doe^Jane", DICOM_UNDEFINED)]))
    seeds["bad_out_of_order"] = dcm_file(TS_EXPLICIT, good + dcm_element(0x0008, 0x0060, "CS", "CR"))
    wrong_length = bytearray(dcm_file(TS_EXPLICIT, good))
    struct.pack_into("<I", wrong_length, 140, struct.unpack_from("<I", wrong_length, 140)[0] + 2)
    seeds["bad_group_length"] = bytes(wrong_length)
    seeds["bad_item_at_top"] = dcm_file(TS_EXPLICIT, dcm_item(b"Doe^Jane") + good)
    deep = b""
    for _ in range(40):
        deep = dcm_item(dcm_element(0x0040, 0xA730, "SQ", deep + dcm_sequence_end(), length=DICOM_UNDEFINED), undefined=True)
    seeds["bad_deep_nesting"] = dcm_file(TS_EXPLICIT, dcm_image(2, 2, extra=[(0x0040, 0xA730, "SQ", deep + dcm_sequence_end(), DICOM_UNDEFINED)]))
    seeds["bad_rows_vr"] = dcm_file(TS_EXPLICIT, good.replace(struct.pack("<HH", 0x0028, 0x0010) + b"US", struct.pack("<HH", 0x0028, 0x0010) + b"PN"))
    seeds["bad_pixel_undefined_native"] = dcm_file(TS_EXPLICIT, dcm_image(2, 2, pixel_data=dcm_encapsulated([b"\0" * 8]), pixel_length=DICOM_UNDEFINED))
    seeds["bad_j2k_size"] = dcm_file(TS_J2K, dcm_image(6, 7, pixel_vr="OB", pixel_data=dcm_encapsulated([j2k_flat(9000, 6, 12)]),
                                                       pixel_length=DICOM_UNDEFINED))
    seeds["bad_j2k_colour"] = dcm_file(TS_J2K, dcm_image(6, 7, pixel_vr="OB", pixel_data=dcm_encapsulated([j2k_flat(7, 6, 12, 3)]),
                                                         pixel_length=DICOM_UNDEFINED))
    seeds["bad_j2k_precision"] = dcm_file(TS_J2K, dcm_image(6, 7, bits=8, stored=8, pixel_vr="OB",
                                                            pixel_data=dcm_encapsulated([j2k_flat(7, 6, 16)]), pixel_length=DICOM_UNDEFINED))
    seeds["bad_jpeg_size"] = dcm_file(TS_JPEG_BASELINE, dcm_image(12, 17, bits=8, stored=8, pixel_vr="OB",
                                                                   pixel_data=dcm_encapsulated([gray]), pixel_length=DICOM_UNDEFINED))
    seeds["bad_jpeg_truncated"] = dcm_file(TS_JPEG_LOSSLESS, dcm_image(
        7, 9, pixel_vr="OB", pixel_data=dcm_encapsulated([jpeg_lossless(9, 7, values12, 12)[:-12]]), pixel_length=DICOM_UNDEFINED))
    rle = rle_frame(values12, 16)
    seeds["bad_rle_no_segments"] = dcm_file(TS_RLE, dcm_image(7, 9, pixel_vr="OB", pixel_data=dcm_encapsulated([b"\0" * 4 + rle[4:]]),
                                                              pixel_length=DICOM_UNDEFINED))
    seeds["bad_rle_16_segments"] = dcm_file(TS_RLE, dcm_image(7, 9, pixel_vr="OB", pixel_data=dcm_encapsulated([b"\x10" + rle[1:]]),
                                                              pixel_length=DICOM_UNDEFINED))
    bomb = zlib.compressobj(9, zlib.DEFLATED, -15)
    body = bomb.compress(dcm_image(4, 4, extra=[(0x0009, 0x0010, "LO", "X"), (0x0009, 0x1000, "OB", b"\0" * (1 << 20))])) + bomb.flush()
    seeds["deflated_large"] = dcm_file(TS_DEFLATED, body + b"\0" * (len(body) % 2))
    seeds["bad_deflate"] = dcm_file(TS_DEFLATED, b"\x03\x00Doe^Jane" * 3)
    seeds["bad_no_preamble"] = dcm_file(TS_EXPLICIT, good)[132:]
    seeds["bad_dicm_only"] = b"\0" * 128 + b"DICM"
    return seeds


# ---- .pth checkpoints (torch.save's zip and legacy formats), without torch -------------------

def fake_torch():
    """Registers stand-ins for the torch globals a state dict pickle names (torch.FloatStorage & co.,
    torch._utils._rebuild_tensor_v2), so the standard pickle module writes the same opcodes as
    torch.save: globals are pickled by module and name only."""
    import types
    torch = sys.modules.get("torch")
    if torch is not None and getattr(torch, "_nn_fake", False):
        return torch
    torch = types.ModuleType("torch")
    torch._nn_fake = True
    utils = types.ModuleType("torch._utils")
    for name in ("FloatStorage", "DoubleStorage", "HalfStorage", "LongStorage", "IntStorage", "BoolStorage",
                 "ByteStorage", "ShortStorage", "CharStorage", "BFloat16Storage"):
        setattr(torch, name, type(name, (), {"__module__": "torch"}))
    for name in ("_rebuild_tensor_v2", "_rebuild_tensor", "_rebuild_parameter"):
        def f(*args):
            return args
        f.__name__ = f.__qualname__ = name
        f.__module__ = "torch._utils"
        setattr(utils, name, f)
    torch._utils = utils
    sys.modules["torch"] = torch
    sys.modules["torch._utils"] = utils
    return torch


class Storage:
    def __init__(self, key, kind, numel, view=None):
        self.key, self.kind, self.numel, self.view = key, kind, numel, view


class Tensor:
    def __init__(self, storage, offset, size, stride, rebuild="_rebuild_tensor_v2"):
        self.storage, self.offset, self.size, self.stride, self.rebuild = storage, offset, size, stride, rebuild

    def __reduce__(self):
        torch = fake_torch()
        f = getattr(torch._utils, self.rebuild)
        if self.rebuild == "_rebuild_tensor":
            return (f, (self.storage, self.offset, tuple(self.size), tuple(self.stride)))
        return (f, (self.storage, self.offset, tuple(self.size), tuple(self.stride), False,
                    collections.OrderedDict()))


def state_pickle(obj, protocol=2, legacy=False):
    import io
    import pickle
    torch = fake_torch()

    class Pickler(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, Storage):
                pid = ("storage", getattr(torch, o.kind), o.key, "cpu", o.numel)
                return pid + (o.view,) if legacy else pid
            return None

    out = io.BytesIO()
    Pickler(out, protocol=protocol).dump(obj)
    return out.getvalue()


def pth_zip(obj, records, prefix="archive", protocol=2, byteorder=b"little", compress=False):
    import io
    import zipfile
    out = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(out, "w", method) as z:
        z.writestr(prefix + "/data.pkl", state_pickle(obj, protocol))
        if byteorder is not None:
            z.writestr(prefix + "/byteorder", byteorder)
        for key, data in records.items():
            z.writestr(prefix + "/data/" + key, data)
        z.writestr(prefix + "/version", b"3\n")
    return out.getvalue()


def pth_legacy(obj, records, protocol=2):
    import pickle
    sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
    out = pickle.dumps(0x1950a86a20f9469cfc6c, protocol=protocol) + pickle.dumps(1001, protocol=protocol)
    out += pickle.dumps(sys_info, protocol=protocol) + state_pickle(obj, protocol, legacy=True)
    out += pickle.dumps(list(records.keys()), protocol=protocol)
    for key, (numel, data) in records.items():
        out += struct.pack("<q", numel) + data
    return out


def torch_checkpoint_seeds():
    import pickle
    seeds = {}
    w = Storage("0", "FloatStorage", 6)
    b = Storage("1", "FloatStorage", 3)
    recs = {"0": f32(1, 2, 3, 4, 5, 6), "1": f32(0.5, -0.5, 0.25)}
    sd = collections.OrderedDict([("fc.weight", Tensor(w, 0, [3, 2], [2, 1])), ("fc.bias", Tensor(b, 0, [3], [1]))])
    seeds["zip_state_dict"] = pth_zip(sd, recs)
    seeds["zip_state_dict_protocol4"] = pth_zip(sd, recs, protocol=4)
    seeds["zip_deflated"] = pth_zip(sd, recs, compress=True)
    seeds["zip_no_byteorder"] = pth_zip(sd, recs, byteorder=None)
    seeds["bad_zip_big_endian"] = pth_zip(sd, recs, byteorder=b"big")
    seeds["zip_training_checkpoint"] = pth_zip({"epoch": 3, "state_dict": sd, "best": 0.5}, recs)
    seeds["zip_model_key"] = pth_zip({"model": sd}, recs)
    # views: transposed, offset, expanded (stride 0), scalar, empty
    views = collections.OrderedDict([
        ("t", Tensor(w, 0, [2, 3], [1, 2])), ("off", Tensor(w, 2, [2], [1])), ("exp", Tensor(b, 0, [4, 3], [0, 1])),
        ("scalar", Tensor(b, 1, [], [])), ("empty", Tensor(b, 0, [0, 5], [5, 1]))])
    seeds["zip_views"] = pth_zip(views, recs)
    types = collections.OrderedDict()
    tr = {}
    for i, (kind, data, n) in enumerate([("DoubleStorage", struct.pack("<2d", 1.5, -2), 2),
                                         ("HalfStorage", struct.pack("<2H", 0x3c00, 0xc000), 2),
                                         ("BFloat16Storage", struct.pack("<2H", 0x3f80, 0xc000), 2),
                                         ("LongStorage", struct.pack("<2q", 7, -7), 2),
                                         ("IntStorage", struct.pack("<2i", 7, -7), 2),
                                         ("ShortStorage", struct.pack("<2h", 7, -7), 2),
                                         ("CharStorage", struct.pack("<2b", 7, -7), 2),
                                         ("ByteStorage", bytes([1, 255]), 2),
                                         ("BoolStorage", bytes([0, 1]), 2)]):
        types["t%d" % i] = Tensor(Storage(str(i), kind, n), 0, [n], [1])
        tr[str(i)] = data
    seeds["zip_every_dtype"] = pth_zip(types, tr)
    seeds["legacy_state_dict"] = pth_legacy(sd, {"0": (6, recs["0"]), "1": (3, recs["1"])})
    vw = Storage("0", "FloatStorage", 6, view=("0v", 2, 3))
    seeds["legacy_storage_view"] = pth_legacy(collections.OrderedDict([("v", Tensor(vw, 0, [3], [1], "_rebuild_tensor"))]),
                                              {"0": (6, recs["0"])})
    # refused and malformed
    evil = b"\x80\x02cos\nsystem\nq\x00X\x04\x00\x00\x00trueq\x01\x85q\x02Rq\x03."
    seeds["bad_pickle_os_system"] = evil
    import io
    import zipfile
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("archive/data.pkl", evil)
        z.writestr("archive/version", b"3\n")
    seeds["bad_zip_os_system"] = out.getvalue()
    good = seeds["zip_state_dict"]
    seeds["bad_zip_truncated"] = good[: len(good) // 2]
    seeds["bad_zip_storage_short"] = pth_zip(sd, {"0": f32(1, 2), "1": recs["1"]})
    seeds["bad_zip_out_of_range_view"] = pth_zip(collections.OrderedDict([("x", Tensor(w, 4, [3], [1]))]), recs)
    seeds["bad_zip_missing_record"] = pth_zip(sd, {"0": recs["0"]})
    seeds["bad_legacy_truncated"] = seeds["legacy_state_dict"][:-5]
    seeds["bad_empty"] = b""
    seeds["bad_text"] = b"not a checkpoint\n"
    # bare pickles for the unpickler entry point: every protocol, nested containers, memo, big ints
    value = {"a": [1, 2.5, None, True, b"bytes", "str\u00e9", (1, 2), {3, 4}, frozenset([5]), 2 ** 70, -2 ** 65],
             "nested": [[[[]]]], "big": list(range(300))}
    for proto in range(0, 6):
        seeds["pickle_protocol%d" % proto] = pickle.dumps(value, protocol=proto)
    shared = [1, 2]
    seeds["pickle_memo_shared"] = pickle.dumps([shared, shared, {"k": shared}], protocol=2)
    cyc = []
    cyc.append(cyc)
    seeds["pickle_cycle"] = pickle.dumps(cyc, protocol=2)
    return seeds


# ---- multipart/form-data bodies (the web app's uploads), as "<Content-Type>\n<body>" ----------

def multipart_seeds():
    def form(parts, boundary="XyZ", ctype=None, tail=b"--\r\n", preamble=b""):
        body = preamble
        for headers, data in parts:
            body += b"--" + boundary.encode() + b"\r\n" + headers + b"\r\n\r\n" + data + b"\r\n"
        body += b"--" + boundary.encode() + tail
        ct = ctype if ctype is not None else "multipart/form-data; boundary=" + boundary
        return ct.encode() + b"\n" + body

    png = make_png(2, 2, color_type=0)
    img = b'Content-Disposition: form-data; name="image"; filename="x.png"\r\nContent-Type: image/png'
    seeds = {}
    seeds["one_file"] = form([(img, png)])
    seeds["quoted_boundary"] = form([(img, png)], boundary="a b'()+_,-./:=?",
                                    ctype='multipart/form-data; boundary="a b\'()+_,-./:=?"')
    seeds["field_and_file"] = form([(b'Content-Disposition: form-data; name="note"', b"hello"), (img, png)])
    seeds["preamble"] = form([(img, png)], preamble=b"ignored preamble\r\n")
    seeds["epilogue"] = form([(img, png)], tail=b"--\r\nepilogue bytes")
    seeds["case_headers"] = form([(b'CONTENT-DISPOSITION: Form-Data; NAME=image; FILENAME="a\\"b.png"', png)])
    seeds["empty_filename"] = form([(b'Content-Disposition: form-data; name="image"; filename=""', b"")])
    seeds["two_files"] = form([(img, png), (img, png)])
    seeds["bad_no_closing"] = form([(img, png)], tail=b"\r\n")
    seeds["bad_nested"] = form([(b'Content-Disposition: form-data; name="x"\r\nContent-Type: multipart/mixed; boundary=in',
                                 b"--in\r\n\r\nx\r\n--in--")])
    seeds["bad_no_name"] = form([(b"Content-Disposition: form-data", b"x")])
    seeds["bad_no_disposition"] = form([(b"Content-Type: text/plain", b"x")])
    seeds["bad_header_no_colon"] = form([(b"garbage line", b"x")])
    seeds["bad_lf_only"] = form([(img, png)]).replace(b"\r\n", b"\n")
    seeds["bad_ctype_not_form"] = form([(img, png)], ctype="text/plain; boundary=XyZ")
    seeds["bad_ctype_no_boundary"] = form([(img, png)], ctype="multipart/form-data")
    seeds["bad_ctype_long_boundary"] = form([(img, png)], boundary="b" * 71)
    seeds["bad_many_parts"] = form([(b'Content-Disposition: form-data; name="f%d"' % i, b"v") for i in range(20)])
    seeds["bad_empty"] = b"multipart/form-data; boundary=XyZ\n"
    return seeds


def keras_h5_seeds():
    """fuzz_keras_h5 reads a recipe, not a file: a few fixed byte strings start it off (the first
    bytes choose a VGG template or free-form layers)."""
    rng = random.Random(5)
    return {"recipe_%02d" % i: bytes(rng.randrange(256) for _ in range(64 + 32 * i)) for i in range(16)}


# ---------------------------------------------------------------- onnx (a minimal protobuf writer)

def pb_varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        if v:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_key(field, wire):
    return pb_varint((field << 3) | wire)


def pb_int(field, v):
    return pb_key(field, 0) + pb_varint(v)


def pb_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return pb_key(field, 2) + pb_varint(len(data)) + data


def pb_float(field, v):
    return pb_key(field, 5) + struct.pack("<f", v)


def onnx_tensor(name, dims, values=None, raw=True, data_type=1, external=None):
    out = b"".join(pb_int(1, d) for d in dims) + pb_int(2, data_type) + pb_bytes(8, name)
    if external is not None:
        out += b"".join(pb_bytes(13, pb_bytes(1, k) + pb_bytes(2, v)) for k, v in external) + pb_int(14, 1)
    elif raw:
        out += pb_bytes(9, f32(*values))
    else:
        out += pb_bytes(4, f32(*values))  # packed float_data
    return out


def onnx_attr_ints(name, values):
    return pb_bytes(5, pb_bytes(1, name) + b"".join(pb_int(8, v) for v in values) + pb_int(20, 7))


def onnx_attr_int(name, value):
    return pb_bytes(5, pb_bytes(1, name) + pb_int(3, value) + pb_int(20, 2))


def onnx_attr_float(name, value):
    return pb_bytes(5, pb_bytes(1, name) + pb_float(2, value) + pb_int(20, 1))


def onnx_node(op, inputs, outputs, name, *attrs):
    return pb_bytes(1, b"".join(pb_bytes(1, i) for i in inputs) + b"".join(pb_bytes(2, o) for o in outputs) +
                    pb_bytes(3, name) + pb_bytes(4, op) + b"".join(attrs))


def onnx_value(name, dims):
    shape = b"".join(pb_bytes(1, pb_bytes(2, d) if isinstance(d, str) else pb_int(1, d)) for d in dims)
    return pb_bytes(1, name) + pb_bytes(2, pb_bytes(1, pb_int(1, 1) + pb_bytes(2, shape)))


def onnx_model(nodes, initializers, inputs, outputs, opset=13, metadata=()):
    graph = b"".join(nodes) + pb_bytes(2, "g") + b"".join(pb_bytes(5, t) for t in initializers)
    graph += b"".join(pb_bytes(11, onnx_value(n, d)) for n, d in inputs)
    graph += b"".join(pb_bytes(12, onnx_value(n, d)) for n, d in outputs)
    model = pb_int(1, 7) + pb_bytes(2, "make_corpus") + pb_bytes(8, pb_bytes(1, "") + pb_int(2, opset)) + pb_bytes(7, graph)
    model += b"".join(pb_bytes(14, pb_bytes(1, k) + pb_bytes(2, v)) for k, v in metadata)
    return model


def onnx_seeds():
    rnd = random.Random(7)

    def values(n):
        return [rnd.uniform(-1, 1) for _ in range(n)]

    seeds = {}
    x = ("x", ["batch", 2, 6, 6])
    conv_w = onnx_tensor("c.weight", [3, 2, 3, 3], values(54))
    conv_b = onnx_tensor("c.bias", [3], values(3), raw=False)
    bn = [onnx_tensor("b." + n, [3], v) for n, v in (("weight", values(3)), ("bias", values(3)),
                                                     ("running_mean", values(3)), ("running_var", [0.5, 1, 2]))]
    fc_w = onnx_tensor("f.weight", [2, 27], values(54))
    fc_b = onnx_tensor("f.bias", [2], values(2))
    chain = [
        onnx_node("Conv", ["x", "c.weight", "c.bias"], ["c"], "conv", onnx_attr_ints("kernel_shape", [3, 3]),
                  onnx_attr_ints("pads", [1, 1, 1, 1]), onnx_attr_ints("strides", [1, 1])),
        onnx_node("BatchNormalization", ["c", "b.weight", "b.bias", "b.running_mean", "b.running_var"], ["b"], "bn",
                  onnx_attr_float("epsilon", 1e-5)),
        onnx_node("Relu", ["b"], ["r"], "relu"),
        onnx_node("MaxPool", ["r"], ["p"], "pool", onnx_attr_ints("kernel_shape", [3, 3]), onnx_attr_ints("strides", [2, 2]),
                  onnx_attr_ints("pads", [1, 1, 1, 1]), onnx_attr_int("ceil_mode", 1)),
        onnx_node("AveragePool", ["p"], ["a"], "avg", onnx_attr_ints("kernel_shape", [2, 2]),
                  onnx_attr_ints("strides", [1, 1]), onnx_attr_int("count_include_pad", 0)),
        onnx_node("Flatten", ["a"], ["fl"], "flatten", onnx_attr_int("axis", 1)),
        onnx_node("Gemm", ["fl", "f.weight", "f.bias"], ["y"], "fc", onnx_attr_int("transB", 1)),
    ]
    inits = [conv_w, conv_b] + bn + [fc_w, fc_b]
    seeds["chain.onnx"] = onnx_model(chain, inits, [x], [("y", ["batch", 2])])
    # Two members averaged, divided by a temperature, a probability output; metadata.
    ens = [
        onnx_node("Conv", ["x", "c.weight"], ["m0"], "m0conv", onnx_attr_ints("pads", [1, 1, 1, 1])),
        onnx_node("GlobalAveragePool", ["m0"], ["m0g"], "m0gap"),
        onnx_node("Flatten", ["m0g"], ["m0f"], "m0flat"),
        onnx_node("Conv", ["x", "c.weight", "c.bias"], ["m1"], "m1conv", onnx_attr_ints("pads", [1, 1, 1, 1])),
        onnx_node("Sigmoid", ["m1"], ["m1s"], "m1sig"),
        onnx_node("GlobalAveragePool", ["m1s"], ["m1g"], "m1gap"),
        onnx_node("Flatten", ["m1g"], ["m1f"], "m1flat"),
        onnx_node("Mean", ["m0f", "m1f"], ["logit"], "mean"),
        onnx_node("Div", ["logit", "t"], ["scaled"], "temperature"),
        onnx_node("Sigmoid", ["scaled"], ["probability"], "probability"),
    ]
    seeds["ensemble.onnx"] = onnx_model(ens, [conv_w, conv_b, onnx_tensor("t", [], [1.5])], [x],
                                        [("logit", ["batch", 3]), ("probability", ["batch", 3])],
                                        metadata=[("threshold", "0.5"), ("preprocessing", "torchvision")])
    # The same with a calibration bias between the temperature and the sigmoid (Platt scaling).
    calibrated = ens[:-1] + [onnx_node("Add", ["scaled", "b"], ["calibrated"], "calibration_bias"),
                             onnx_node("Sigmoid", ["calibrated"], ["probability"], "probability")]
    seeds["ensemble_calibrated.onnx"] = onnx_model(
        calibrated, [conv_w, conv_b, onnx_tensor("t", [], [1.5]), onnx_tensor("b", [], [2.5])], [x],
        [("logit", ["batch", 3]), ("probability", ["batch", 3])], metadata=[("threshold", "0.5")])
    # A Constant node, an Identity on a constant, Dropout, auto_pad, Gemm with transB = 0, opset 9.
    const = pb_bytes(5, pb_bytes(1, "value") + pb_bytes(5, onnx_tensor("", [3, 2], values(6))) + pb_int(20, 4))
    misc = [
        onnx_node("Constant", [], ["w"], "const", const),
        onnx_node("Identity", ["c.bias"], ["c.bias2"], "alias"),
        onnx_node("Conv", ["x", "c.weight", "c.bias2"], ["c"], "conv", onnx_attr_ints("strides", [1, 1]),
                  pb_bytes(5, pb_bytes(1, "auto_pad") + pb_bytes(4, "SAME_UPPER") + pb_int(20, 3))),
        onnx_node("Dropout", ["c"], ["d"], "drop"),
        onnx_node("GlobalAveragePool", ["d"], ["g"], "gap"),
        onnx_node("Flatten", ["g"], ["fl"], "flatten"),
        onnx_node("Gemm", ["fl", "w"], ["y"], "fc"),
    ]
    seeds["misc.onnx"] = onnx_model(misc, [conv_w, conv_b], [x], [("y", ["batch", 2])],
                                    opset=9)
    # A 2-D input through Gemm, BatchNormalization (1-D) and Relu.
    seeds["mlp.onnx"] = onnx_model(
        [onnx_node("Gemm", ["v", "f.weight", "f.bias"], ["h"], "fc", onnx_attr_int("transB", 1)),
         onnx_node("BatchNormalization", ["h", "s", "o", "m", "q"], ["hb"], "bn"),
         onnx_node("Relu", ["hb"], ["y"], "relu")],
        [fc_w, fc_b] + [onnx_tensor(n, [2], v) for n, v in (("s", [1, 2]), ("o", [0, 1]), ("m", [0, 0.5]), ("q", [1, 3]))],
        [("v", [1, 27])], [("y", [1, 2])])
    # Refused: external data from memory, an unsupported op, an unsupported opset, a bad raw size,
    # a branch, and a truncated file.
    ext = onnx_tensor("c.weight", [3, 2, 3, 3], external=[("location", "w.bin"), ("offset", "0"), ("length", "216")])
    seeds["external.onnx"] = onnx_model(chain, [ext, conv_b] + bn + [fc_w, fc_b], [x], [("y", ["batch", 2])])
    seeds["softmax.onnx"] = onnx_model(chain[:-1] + [onnx_node("Softmax", ["fl"], ["y"], "softmax")], inits, [x],
                                       [("y", ["batch", 27])])
    seeds["opset1.onnx"] = onnx_model(chain, inits, [x], [("y", ["batch", 2])], opset=1)
    seeds["bad_raw.onnx"] = onnx_model(chain, [onnx_tensor("c.weight", [3, 2, 3, 4], values(54))] + inits[1:], [x],
                                       [("y", ["batch", 2])])
    seeds["branch.onnx"] = onnx_model(chain + [onnx_node("Relu", ["c"], ["z"], "second")], inits, [x], [("y", ["batch", 2])])
    seeds["truncated.onnx"] = seeds["chain.onnx"][:len(seeds["chain.onnx"]) // 2]
    return seeds



def png_encode_seeds():
    """fuzz_png_encode: bytes for nn's deflate; from 4 bytes on also an image (see the target)."""
    rng = random.Random(11)
    seeds = {"empty": b"", "one": b"x", "three": b"abc"}
    seeds["runs"] = b"".join(bytes([k % 7]) * (k % 300 + 1) for k in range(60))
    seeds["random_4k"] = bytes(rng.randrange(256) for _ in range(4096))
    seeds["image_gray_16x16"] = bytes([15, 15, 0]) + bytes((x * 16 + y) % 256 for y in range(16) for x in range(16))
    wave = [int(127.5 + 120 * math.sin(i / 9.0)) for i in range(32 * 32 * 3)]
    seeds["image_rgb_32x32"] = bytes([31, 31, 2]) + bytes(wave)
    seeds["image_rgba_flat"] = bytes([7, 9, 3]) + bytes([200]) * 400
    return seeds


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py OUT_DIR")
    targets = (("fuzz_safetensors", safetensors_seeds()), ("fuzz_image", image_seeds()),
               ("fuzz_torch_checkpoint", torch_checkpoint_seeds()), ("fuzz_keras_h5", keras_h5_seeds()),
               ("fuzz_multipart", multipart_seeds()), ("fuzz_dicom", dicom_seeds()), ("fuzz_onnx", onnx_seeds()),
               ("fuzz_png_encode", png_encode_seeds()))
    for target, seeds in targets:
        folder = os.path.join(sys.argv[1], target)
        os.makedirs(folder, exist_ok=True)
        for name, data in seeds.items():
            with open(os.path.join(folder, name), "wb") as f:
                f.write(data)
        print("%s: %d seeds in %s" % (target, len(seeds), folder))


if __name__ == "__main__":
    main()
