#!/usr/bin/env python3
"""API tests of pneumonia-serve over a real loopback socket (python3 standard library only).

    python3 tests/serve/test_serve_api.py --url http://127.0.0.1:PORT --png FILE.png
        [--busy-url http://127.0.0.1:PORT2]

Run by scripts/check_serve.sh against a server started with --read-timeout-s 4 (the slow-client
test relies on it). Covers the routes and their JSON, the security headers, a PNG, a JPEG (encoded
here from the PNG's pixels by a small baseline JPEG encoder) and a non-square image (heatmap at the
upload's size), determinism, every bad input (each must give the right status and a JSON error),
a DICOM with the PNG's pixels (the same answer, no patient data echoed), images that are not chest
X-rays (REJECTED with a reason), the body/header limits (a 64 MiB Content-Length and an endless chunked body refused with 413
without the client sending it all, 200 headers, a huge request line), a slow client that must not
block others and must be disconnected, 32 concurrent clients that must all get the single-request
answer, and (with --busy-url, a server with --threads 1 --queue 1) 503 when the queue is full.
Prints one line per test; exit 0 when all pass, 1 otherwise.
"""
import argparse
import base64
import http.client
import json
import math
import socket
import struct
import sys
import threading
import time
import urllib.parse
import zlib

ARGS = None
HOST = PORT = None
BUSY = None


# ----------------------------------------------------------------------------------------------
# Small image helpers: PNG decode/encode (8-bit, non-interlaced) and a baseline grayscale JPEG.

def png_decode_gray(data):
    """8-bit non-interlaced PNG (gray, gray+alpha, RGB, RGBA) -> (width, height, gray rows)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, ihdr = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = ihdr
    assert depth == 8 and interlace == 0, "test helper supports 8-bit non-interlaced PNG only"
    ch = {0: 1, 4: 2, 2: 3, 6: 4}[ctype]
    raw, stride, prev, rows = zlib.decompress(idat), w * ch, bytearray(w * ch), []
    for y in range(h):
        f = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b, c = prev[i], (prev[i - ch] if i >= ch else 0)
            if f == 1: line[i] = (line[i] + a) & 255
            elif f == 2: line[i] = (line[i] + b) & 255
            elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append([line[x * ch] if ch < 3 else (299 * line[x * ch] + 587 * line[x * ch + 1] + 114 * line[x * ch + 2]) // 1000
                     for x in range(w)])
        prev = line
    return w, h, rows


def png_encode_gray(w, h, rows):
    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def png_size(data):
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", "heatmap is not a PNG"
    return struct.unpack(">II", data[16:24])


ZIGZAG = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14,
          21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53, 60,
          61, 54, 47, 55, 62, 63]
QLUM = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29,
        51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121,
        120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
DC_BITS = [0, 1, 5, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0]
DC_VALS = list(range(12))
AC_BITS = [0, 2, 1, 3, 3, 2, 4, 3, 5, 5, 4, 4, 0, 0, 1, 0x7d]
AC_VALS = bytes.fromhex(
    "01020300041105122131410613516107227114328191a1082342b1c11552d1f02433627282090a161718191a25262728292a3435363738393a"
    "434445464748494a535455565758595a636465666768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9"
    "aab2b3b4b5b6b7b8b9bac2c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9fa")


def dicom_encode_gray(w, h, rows, patient="Doe^Jane"):
    """A DICOM Part 10 file (explicit VR little endian, MONOCHROME2, 8 bits, no window or rescale)
    holding these 8-bit pixels: nn maps them to v/255, as it does the PNG's."""
    def element(group, elem, vr, value):
        if len(value) % 2:
            value += b"\0" if vr in (b"UI", b"OB") else b" "
        if vr in (b"OB", b"OW", b"SQ", b"UN", b"UT"):
            return struct.pack("<HH", group, elem) + vr + b"\0\0" + struct.pack("<I", len(value)) + value
        return struct.pack("<HH", group, elem) + vr + struct.pack("<H", len(value)) + value
    us = lambda v: struct.pack("<H", v)
    meta_body = (element(0x0002, 0x0001, b"OB", b"\0\1") +
                 element(0x0002, 0x0002, b"UI", b"1.2.840.10008.5.1.4.1.1.7") +
                 element(0x0002, 0x0003, b"UI", b"1.2.826.0.1.3680043.10.1") +
                 element(0x0002, 0x0010, b"UI", b"1.2.840.10008.1.2.1"))
    meta = element(0x0002, 0x0000, b"UL", struct.pack("<I", len(meta_body))) + meta_body
    data = (element(0x0008, 0x0016, b"UI", b"1.2.840.10008.5.1.4.1.1.7") +
            element(0x0008, 0x0018, b"UI", b"1.2.826.0.1.3680043.10.1") +
            element(0x0008, 0x0060, b"CS", b"CR") +
            element(0x0010, 0x0010, b"PN", patient.encode()) +
            element(0x0010, 0x0020, b"LO", b"PID-4711") +
            element(0x0028, 0x0002, b"US", us(1)) + element(0x0028, 0x0004, b"CS", b"MONOCHROME2") +
            element(0x0028, 0x0010, b"US", us(h)) + element(0x0028, 0x0011, b"US", us(w)) +
            element(0x0028, 0x0100, b"US", us(8)) + element(0x0028, 0x0101, b"US", us(8)) +
            element(0x0028, 0x0102, b"US", us(7)) + element(0x0028, 0x0103, b"US", us(0)) +
            element(0x7FE0, 0x0010, b"OB", bytes(v for row in rows for v in row)))
    return b"\0" * 128 + b"DICM" + meta + data


def huffman_codes(bits, vals):
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(bits[length - 1]):
            codes[vals[k]] = (code, length)
            code, k = code + 1, k + 1
        code <<= 1
    return codes


def jpeg_encode_gray(w, h, rows):
    """Baseline (SOF0) grayscale JPEG, quality 50 tables, standard Huffman tables."""
    dc, ac = huffman_codes(DC_BITS, DC_VALS), huffman_codes(AC_BITS, list(AC_VALS))
    cos = [[math.cos((2 * x + 1) * u * math.pi / 16) for x in range(8)] for u in range(8)]
    out, acc, nbits = bytearray(), 0, 0

    def put(code, length):
        nonlocal acc, nbits
        acc, nbits = (acc << length) | code, nbits + length
        while nbits >= 8:
            byte = (acc >> (nbits - 8)) & 255
            out.append(byte)
            if byte == 0xFF:
                out.append(0)
            nbits -= 8
        acc &= (1 << nbits) - 1

    def magnitude(v):
        size = abs(v).bit_length()
        return size, (v if v >= 0 else v + (1 << size) - 1)

    prev_dc = 0
    for by in range(0, h, 8):
        for bx in range(0, w, 8):
            block = [[rows[min(by + y, h - 1)][min(bx + x, w - 1)] - 128 for x in range(8)] for y in range(8)]
            coef = [0] * 64
            for v in range(8):
                for u in range(8):
                    s = sum(block[y][x] * cos[u][x] * cos[v][y] for y in range(8) for x in range(8))
                    cu, cv = (math.sqrt(0.5) if u == 0 else 1), (math.sqrt(0.5) if v == 0 else 1)
                    coef[v * 8 + u] = int(round(0.25 * cu * cv * s / QLUM[v * 8 + u]))
            zz = [coef[i] for i in ZIGZAG]
            size, bits = magnitude(zz[0] - prev_dc)
            prev_dc = zz[0]
            put(*dc[size])
            if size:
                put(bits, size)
            run = 0
            for k in range(1, 64):
                if zz[k] == 0:
                    run += 1
                    continue
                while run > 15:
                    put(*ac[0xF0])
                    run -= 16
                size, bits = magnitude(zz[k])
                put(*ac[(run << 4) | size])
                put(bits, size)
                run = 0
            if run:
                put(*ac[0x00])
    if nbits:
        put((1 << (8 - nbits)) - 1, 8 - nbits)
    def seg(marker, body):
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body
    head = b"\xff\xd8" + seg(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    head += seg(0xDB, b"\x00" + bytes(QLUM[i] for i in ZIGZAG))
    head += seg(0xC0, struct.pack(">BHHB", 8, h, w, 1) + b"\x01\x11\x00")
    head += seg(0xC4, b"\x00" + bytes(DC_BITS) + bytes(DC_VALS))
    head += seg(0xC4, b"\x10" + bytes(AC_BITS) + AC_VALS)
    head += seg(0xDA, b"\x01\x01\x00\x00\x3f\x00")
    return head + bytes(out) + b"\xff\xd9"


# ----------------------------------------------------------------------------------------------
# HTTP helpers.

def multipart(fields, boundary="----nnTestBoundary7MA4YWxkTrZu0gW"):
    """fields: (name, filename or None, content type or None, bytes) -> (content type, body)."""
    body = b""
    for name, filename, ctype, data in fields:
        disp = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename is not None else "")
        body += f"--{boundary}\r\nContent-Disposition: {disp}\r\n".encode()
        if ctype:
            body += f"Content-Type: {ctype}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


def request(method, path, body=None, headers=None, url=None, timeout=60):
    host, port = (HOST, PORT) if url is None else url
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), data
    finally:
        conn.close()


def predict(image, filename="xray.png", ctype="image/png", url=None):
    content_type, body = multipart([("image", filename, ctype, image)])
    return request("POST", "/api/predict", body, {"Content-Type": content_type}, url=url)


def expect_error(status, headers, data, want, what):
    assert status in (want if isinstance(want, tuple) else (want,)), f"{what}: status {status}, expected {want}: {data[:300]!r}"
    assert headers.get("content-type", "").startswith("application/json"), f"{what}: not JSON: {headers}"
    err = json.loads(data)
    assert isinstance(err.get("error"), str) and err["error"], f"{what}: no error message: {err}"
    return err["error"]


def raw_exchange(payload, timeout=10):
    """Sends raw bytes on a fresh socket and reads the status line of the answer."""
    s = socket.create_connection((HOST, PORT), timeout=timeout)
    try:
        s.sendall(payload)
        return read_response(s)
    finally:
        s.close()


def read_response(s):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else 0
    headers = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:n]


# ----------------------------------------------------------------------------------------------
# Tests.

SINGLE = {}


def check_prediction(status, headers, data, width, height, what):
    assert status == 200, f"{what}: status {status}: {data[:300]!r}"
    assert headers.get("cache-control") == "no-store", headers
    r = json.loads(data)
    for key in ("label", "probability", "threshold", "heatmap", "model", "elapsed_ms", "width", "height"):
        assert key in r, f"{what}: no {key} in {list(r)}"
    assert r["label"] in ("NORMAL", "PNEUMONIA"), r["label"]
    assert 0 <= r["probability"] <= 1, r["probability"]
    assert r["label"] == ("PNEUMONIA" if r["probability"] >= r["threshold"] else "NORMAL"), r
    assert (r["width"], r["height"]) == (width, height), (r["width"], r["height"], width, height)
    png = base64.b64decode(r["heatmap"], validate=True)
    assert png_size(png) == (width, height), f"{what}: heatmap {png_size(png)}, image {(width, height)}"
    return r


def test_health():
    status, headers, data = request("GET", "/api/health")
    assert status == 200, status
    h = json.loads(data)
    assert h["status"] == "ok" and h["classes"] == ["NORMAL", "PNEUMONIA"], h
    assert h["model"] == "model.safetensors" and isinstance(h["input_size"], int) and 0 <= h["threshold"] <= 1, h
    assert h["device"] in ("cpu", "cuda"), h
    assert h["members"] == 1 and h["ood_gate"] == "input checks + feature distance", h
    assert h["model_card"] is True, h
    assert isinstance(h["batches"], int) and 0 <= h["batches"] <= h["images_explained"], h
    assert headers.get("x-content-type-options") == "nosniff", headers
    assert "default-src 'self'" in headers.get("content-security-policy", ""), headers
    assert headers.get("cache-control") == "no-store", headers


def test_model_card():
    status, headers, data = request("GET", "/model-card")
    assert status == 200 and headers["content-type"] == "text/plain; charset=utf-8", (status, headers)
    text = data.decode("utf-8")
    for part in ("# Model card: model.safetensors", "## Metrics", "Sensitivity", "## Calibration",
                 "## Out-of-distribution gate", "## Intended use", "## Limitations"):
        assert part in text, f"the model card lacks {part!r}"
    expect_error(*request("POST", "/model-card", b"x", {"Content-Type": "text/plain"}), 405, "POST /model-card")


def test_page():
    status, headers, data = request("GET", "/")
    assert status == 200 and headers["content-type"] == "text/html; charset=utf-8", (status, headers)
    assert b"<html" in data.lower() or b"<!doctype" in data.lower(), data[:200]
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("content-security-policy", "").startswith("default-src 'self'; img-src 'self' data:"), headers


def test_predict_png():
    w, h, _ = png_decode_gray(PNG)
    SINGLE["png"] = check_prediction(*predict(PNG), w, h, "PNG")


def test_predict_jpeg():
    w, h, _ = png_decode_gray(PNG)
    check_prediction(*predict(JPEG, "xray.jpg", "image/jpeg"), w, h, "JPEG")


def test_predict_non_square():
    w, h, rows = png_decode_gray(PNG)
    rows2 = [[rows[y * h // 72][x * w // 96] for x in range(96)] for y in range(72)]
    check_prediction(*predict(png_encode_gray(96, 72, rows2)), 96, 72, "96x72 PNG")


def test_deterministic():
    a = json.loads(predict(PNG)[2])
    b = json.loads(predict(PNG)[2])
    assert a["probability"] == b["probability"] == SINGLE["png"]["probability"], (a["probability"], b["probability"])
    assert a["heatmap"] == b["heatmap"]


def test_predict_dicom():
    """A DICOM holding the PNG's pixels gets the PNG's answer; no header value comes back."""
    w, h, rows = png_decode_gray(PNG)
    dcm = dicom_encode_gray(w, h, rows)
    status, headers, data = predict(dcm, "xray.dcm", "application/dicom")
    r = check_prediction(status, headers, data, w, h, "DICOM")
    assert r["probability"] == SINGLE["png"]["probability"], (r["probability"], SINGLE["png"]["probability"])
    assert r["heatmap"] == SINGLE["png"]["heatmap"]
    # Everything but the heatmap's base64 (which, being any letters, may hold "Doe" by chance).
    heatmap = r["heatmap"].encode()
    rest = data.replace(heatmap, b"")
    assert len(rest) < len(data) and b"Doe" not in rest and b"Jane" not in rest and b"4711" not in rest, rest[:300]
    # A truncated DICOM is a 400 with a JSON error that names no header value either.
    status, headers, data = predict(dcm[:len(dcm) - 100], "cut.dcm", "application/dicom")
    msg = expect_error(status, headers, data, 400, "truncated DICOM")
    assert "Doe" not in msg and "4711" not in msg, msg


def test_rejected():
    """Not a chest X-ray (blank, colour): 200 with label REJECTED and a reason, no probability or heatmap."""
    white = png_encode_gray(64, 64, [[255] * 64 for _ in range(64)])
    for what, image in (("white", white), ("colour", colour_png(80, 60))):
        status, headers, data = predict(image, what + ".png")
        assert status == 200, f"{what}: status {status}: {data[:300]!r}"
        r = json.loads(data)
        assert r["label"] == "REJECTED" and isinstance(r["reason"], str) and r["reason"], r
        assert "probability" not in r and "heatmap" not in r, list(r)
        assert r["model"] == "model.safetensors" and r["elapsed_ms"] >= 0, r
    # The real X-ray is still answered.
    assert json.loads(predict(PNG)[2])["label"] in ("NORMAL", "PNEUMONIA")


def colour_png(w, h):
    """An 8-bit RGB PNG: a red-green gradient over blue."""
    raw = b"".join(b"\0" + bytes(v for x in range(w) for v in (x * 255 // (w - 1), y * 255 // (h - 1), 200))
                   for y in range(h))
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_keep_alive():
    conn = http.client.HTTPConnection(HOST, PORT, timeout=30)
    for _ in range(3):
        conn.request("GET", "/api/health")
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read())["status"] == "ok"
    conn.close()


def test_bad_inputs():
    good_type, _ = multipart([("image", "a.png", "image/png", PNG)])
    truncated = PNG[:len(PNG) // 2]
    huge = png_encode_gray(1, 1, [[0]])
    huge = huge[:16] + struct.pack(">II", 20000, 20000) + huge[24:29]
    huge = huge[:29] + struct.pack(">I", zlib.crc32(huge[12:29]) & 0xFFFFFFFF) + huge[33:]
    cases = [
        ("not multipart", "POST", "/api/predict", b'{"image": 1}', {"Content-Type": "application/json"}, 400),
        ("no content type", "POST", "/api/predict", b"abc", {}, 400),
        ("multipart without boundary", "POST", "/api/predict", b"abc", {"Content-Type": "multipart/form-data"}, 400),
        ("body without the boundary", "POST", "/api/predict", b"hello", {"Content-Type": good_type}, 400),
        ("multipart without closing boundary", "POST", "/api/predict",
         multipart([("image", "a.png", "image/png", PNG)])[1][:-40], {"Content-Type": good_type}, 400),
        ("part without Content-Disposition", "POST", "/api/predict",
         b"------nnTestBoundary7MA4YWxkTrZu0gW\r\nContent-Type: image/png\r\n\r\nxx\r\n------nnTestBoundary7MA4YWxkTrZu0gW--\r\n",
         {"Content-Type": good_type}, 400),
        ("nested multipart", "POST", "/api/predict", *(lambda t, b: (b, {"Content-Type": t}))(
            *multipart([("image", None, "multipart/mixed; boundary=x", b"--x--")])), 400),
    ]
    for what, method, path, body, headers, want in cases:
        expect_error(*request(method, path, body, headers), want, what)
    files = [
        ("missing field image", [("file", "a.png", "image/png", PNG)]),
        ("field image without a file", [("other", None, None, b"x")]),
        ("two files", [("image", "a.png", "image/png", PNG), ("image", "b.png", "image/png", PNG)]),
        ("two file fields", [("image", "a.png", "image/png", PNG), ("extra", "b.png", "image/png", PNG)]),
        ("empty file", [("image", "a.png", "image/png", b"")]),
        ("broken image", [("image", "a.png", "image/png", b"\x89PNG\r\n\x1a\nthis is not really a png" * 10)]),
        ("random bytes", [("image", "a.png", "image/png", bytes(range(256)) * 4)]),
        ("truncated PNG", [("image", "a.png", "image/png", truncated)]),
        ("truncated JPEG", [("image", "a.jpg", "image/jpeg", JPEG[:len(JPEG) // 2])]),
        ("GIF", [("image", "a.gif", "image/gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;")]),
        ("too many pixels", [("image", "big.png", "image/png", huge)]),
        ("path-like file name", [("image", "../../etc/passwd.png", "image/png", PNG)]),
    ]
    for what, fields in files:
        ctype, body = multipart(fields)
        msg = expect_error(*request("POST", "/api/predict", body, {"Content-Type": ctype}), 400, what)
        if what == "too many pixels":
            assert "20000" in msg or "large" in msg.lower() or "limit" in msg.lower(), msg
    expect_error(*request("GET", "/nope"), 404, "unknown path")
    expect_error(*request("GET", "/api/predict"), 405, "GET /api/predict")
    expect_error(*request("POST", "/api/health", b"x"), 405, "POST /api/health")
    expect_error(*request("DELETE", "/"), 405, "DELETE /")


def test_huge_content_length():
    """A 64 MiB upload is refused from its Content-Length, before the body is sent."""
    t0 = time.time()
    s = socket.create_connection((HOST, PORT), timeout=10)
    s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=x\r\n"
              b"Content-Length: 67108864\r\n\r\n" + b"x" * 65536)
    status, headers, data = read_response(s)
    s.close()
    expect_error(status, headers, data, 413, "64 MiB Content-Length")
    assert time.time() - t0 < 3, f"413 took {time.time() - t0:.1f} s"


def test_endless_chunked():
    """A chunked body that never ends is cut at the body limit with 413."""
    s = socket.create_connection((HOST, PORT), timeout=30)
    s.sendall(b"POST /api/predict HTTP/1.1\r\nHost: t\r\nContent-Type: multipart/form-data; boundary=x\r\n"
              b"Transfer-Encoding: chunked\r\n\r\n")
    stop, sent = threading.Event(), [0]
    chunk = b"10000\r\n" + b"y" * 0x10000 + b"\r\n"

    def sender():
        try:
            while not stop.is_set() and sent[0] < (256 << 20):
                s.sendall(chunk)
                sent[0] += 0x10000
        except OSError:
            pass
    t = threading.Thread(target=sender, daemon=True)
    t0 = time.time()
    t.start()
    status, headers, data = read_response(s)
    stop.set()
    s.close()
    t.join(10)
    expect_error(status, headers, data, 413, "endless chunked body")
    assert time.time() - t0 < 20, f"413 took {time.time() - t0:.1f} s"
    assert sent[0] < (256 << 20), "the server read 256 MiB of chunks without refusing"


def test_many_headers():
    head = "".join(f"X-Header-{i}: value-{i}\r\n" for i in range(200))
    status, headers, data = raw_exchange(f"GET /api/health HTTP/1.1\r\nHost: t\r\n{head}\r\n".encode())
    expect_error(status, headers, data, (431, 400), "200 headers")


def test_huge_header():
    status, headers, data = raw_exchange(b"GET /api/health HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n")
    expect_error(status, headers, data, (431, 400), "a 100 KB header")


def test_long_request_line():
    status, headers, data = raw_exchange(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: t\r\n\r\n")
    expect_error(status, headers, data, (414, 431, 400), "a 20 KB request line")


def test_garbage_request():
    status, headers, data = raw_exchange(b"THIS IS NOT HTTP\r\n\r\n")
    expect_error(status, headers, data, 400, "garbage request")


def test_slow_client():
    """Half a request, then silence: others are served meanwhile; the server hangs up after its
    read timeout (the server runs with --read-timeout-s 4)."""
    slow = []
    for payload in (b"POST /api/predict HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"z" * 10,
                    b"GET /api/hea"):
        s = socket.create_connection((HOST, PORT), timeout=20)
        s.sendall(payload)
        slow.append(s)
    t0 = time.time()
    status, _, data = request("GET", "/api/health", timeout=5)
    # Well under the 4 s read timeout: the stalled connections did not hold this request back.
    assert status == 200 and time.time() - t0 < 3, (status, time.time() - t0)
    w, h, _ = png_decode_gray(PNG)
    check_prediction(*predict(PNG), w, h, "predict while a client stalls")
    for s in slow:
        try:
            got = s.recv(65536)  # b"" = closed by the server (a timeout answer is not required)
            while got:
                got = s.recv(65536)
        except ConnectionResetError:
            pass
        except socket.timeout:
            raise AssertionError("the stalled connection was not closed within 20 s")
        s.close()
    elapsed = time.time() - t0
    assert elapsed < 14, f"stalled connections closed after {elapsed:.1f} s"


def test_concurrent():
    results, errors = [None] * 32, []

    def client(i):
        try:
            status, _, data = predict(PNG)
            results[i] = (status, json.loads(data))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))
    threads = [threading.Thread(target=client, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors[:3]
    want = SINGLE["png"]
    for status, r in results:
        assert status == 200, (status, r)
        assert abs(r["probability"] - want["probability"]) <= 1e-6, (r["probability"], want["probability"])
        assert r["label"] == want["label"] and r["heatmap"] == want["heatmap"]


def test_queue_full():
    """With --threads 1 --queue 1, 12 predictions sent at the same moment on connections opened
    beforehand: one runs, one waits, the others get 503 at once. Sending all requests at once (not
    12 threads each connecting and sending) makes this independent of how fast the machine is; a
    round where the worker still kept up (every answer 200) is tried again, up to 5 rounds."""
    content_type, body = multipart([("image", "xray.png", "image/png", PNG)])
    raw = (f"POST /api/predict HTTP/1.1\r\nHost: t\r\nContent-Type: {content_type}\r\n"
           f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    rounds = []
    for _ in range(5):
        socks = [socket.create_connection(BUSY, timeout=120) for _ in range(12)]
        go = threading.Barrier(len(socks))
        answers, lock = [], threading.Lock()

        def client(s):
            go.wait()
            s.sendall(raw)
            answer = read_response(s)
            with lock:
                answers.append(answer)
        threads = [threading.Thread(target=client, args=(s,)) for s in socks]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        for s in socks:
            s.close()
        statuses = [a[0] for a in answers]
        assert len(statuses) == 12 and set(statuses) <= {200, 503} and statuses.count(200) > 0, statuses
        for status, headers, data in answers:
            if status == 503:
                expect_error(status, headers, data, 503, "queue full")
        rounds.append(statuses.count(503))
        if rounds[-1] > 0:
            break
    assert rounds[-1] > 0, f"no 503 in {len(rounds)} rounds of 12 simultaneous requests"
    assert request("GET", "/api/health", url=BUSY)[0] == 200


def test_still_healthy():
    test_health()
    before = json.loads(request("GET", "/api/health")[2])
    assert json.loads(predict(PNG)[2])["probability"] == SINGLE["png"]["probability"]
    after = json.loads(request("GET", "/api/health")[2])
    # A lone request is a batch of one; the concurrent test before shared batches.
    assert (after["images_explained"] - before["images_explained"], after["batches"] - before["batches"]) == (1, 1), (before, after)
    assert before["images_explained"] >= 32 + 1 and before["batches"] >= 1, before


def main():
    global ARGS, HOST, PORT, PNG, JPEG, BUSY
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--png", required=True, help="an 8-bit PNG X-ray (e.g. from make-synthetic-xrays)")
    p.add_argument("--busy-url", help="a second server started with --threads 1 --queue 1")
    ARGS = p.parse_args()
    u = urllib.parse.urlparse(ARGS.url)
    HOST, PORT = u.hostname, u.port
    if ARGS.busy_url:
        b = urllib.parse.urlparse(ARGS.busy_url)
        BUSY = (b.hostname, b.port)
    PNG = open(ARGS.png, "rb").read()
    w, h, rows = png_decode_gray(PNG)
    JPEG = jpeg_encode_gray(w, h, rows)
    tests = [test_health, test_model_card, test_page, test_predict_png, test_predict_jpeg, test_predict_non_square, test_deterministic,
             test_predict_dicom, test_rejected,
             test_keep_alive, test_bad_inputs, test_huge_content_length, test_endless_chunked, test_many_headers,
             test_huge_header, test_long_request_line, test_garbage_request, test_slow_client, test_concurrent]
    if BUSY:
        tests.append(test_queue_full)
    tests.append(test_still_healthy)
    failed = 0
    for t in tests:
        t0 = time.time()
        try:
            t()
            print(f"PASS {t.__name__} ({time.time() - t0:.2f} s)", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is reported, the others still run
            failed += 1
            print(f"FAIL {t.__name__}: {type(e).__name__}: {e}", flush=True)
    print(f"{len(tests) - failed}/{len(tests)} passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
