#!/usr/bin/env python3
"""Latency and memory of pneumonia-serve's /api/predict (a measurement, not a test).

    python3 tests/serve/latency.py --server BUILD/bin/pneumonia-serve --model RUN/model.safetensors \
        --image X.png [--requests 100] [--concurrency 32] [--memory-requests 1000] [server options...]
    python3 tests/serve/latency.py --url http://127.0.0.1:PORT --pid PID --image X.png ...

With --server it starts the server itself (--port 0) and stops it at the end; extra arguments after
`--` go to the server. Measures: p50/p99/mean latency of --requests sequential predictions (one
connection each, as a browser would without keep-alive); the same over --requests * 4 predictions
from --concurrency clients at once, with the throughput; the server's RSS (VmRSS and VmHWM from
/proc/PID/status) before and after --memory-requests more predictions (sent by --concurrency
clients). Prints one JSON object. Python standard library only.
"""
import argparse
import http.client
import json
import subprocess
import sys
import threading
import time
import urllib.parse
import uuid


def rss_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


def percentile(values, q):
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def summary(ms):
    return {"n": len(ms), "p50_ms": round(percentile(ms, 0.5), 2), "p99_ms": round(percentile(ms, 0.99), 2),
            "mean_ms": round(sum(ms) / len(ms), 2), "max_ms": round(max(ms), 2)}


class Client:
    def __init__(self, host, port, image):
        self.host, self.port = host, port
        b = "----lat" + uuid.uuid4().hex
        self.ctype = f"multipart/form-data; boundary={b}"
        self.body = (f"--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"x.png\"\r\n"
                     f"Content-Type: image/png\r\n\r\n").encode() + image + f"\r\n--{b}--\r\n".encode()

    def predict(self):
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(self.host, self.port, timeout=300)
        try:
            conn.request("POST", "/api/predict", self.body, {"Content-Type": self.ctype})
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        ms = (time.perf_counter() - t0) * 1000
        return r.status, ms, data


def concurrent(client, total, clients):
    times, errors, lock, next_i = [], [], threading.Lock(), [0]

    def worker():
        while True:
            with lock:
                if next_i[0] >= total:
                    return
                next_i[0] += 1
            try:
                status, ms, data = client.predict()
                with lock:
                    (times.append(ms) if status == 200 else errors.append(status))
            except Exception as e:  # noqa: BLE001 - counted
                with lock:
                    errors.append(repr(e))
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return times, errors, time.perf_counter() - t0


def main():
    argv = sys.argv[1:]
    extra = []
    if "--" in argv:
        extra, argv = argv[argv.index("--") + 1:], argv[:argv.index("--")]
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--server")
    p.add_argument("--model")
    p.add_argument("--url")
    p.add_argument("--pid", type=int)
    p.add_argument("--image", required=True)
    p.add_argument("--requests", type=int, default=100)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--memory-requests", type=int, default=1000)
    a = p.parse_args(argv)
    proc = None
    if a.server:
        proc = subprocess.Popen([a.server, "--model", a.model, "--port", "0"] + extra, stdout=subprocess.PIPE, text=True)
        for line in proc.stdout:
            if line.startswith("listening on "):
                a.url = line.split()[-1]
                break
        a.pid = proc.pid
    if not a.url:
        sys.exit("give --server and --model, or --url (and --pid for memory)")
    u = urllib.parse.urlparse(a.url)
    client = Client(u.hostname, u.port, open(a.image, "rb").read())
    try:
        status, _, data = client.predict()  # warm-up
        assert status == 200, (status, data[:300])
        health = json.loads(http_get(u.hostname, u.port, "/api/health"))
        seq = [client.predict()[1] for _ in range(a.requests)]
        counts = batch_counts(u)
        conc, conc_errors, conc_s = concurrent(client, a.requests * 4, a.concurrency)
        conc_batches = batch_counts(u, counts)
        before = rss_kib(a.pid) if a.pid else None
        counts = batch_counts(u)
        mem_times, mem_errors, mem_s = concurrent(client, a.memory_requests, a.concurrency)
        mem_batches = batch_counts(u, counts)
        after = rss_kib(a.pid) if a.pid else None
        out = {
            "server": {"url": a.url, "model": health["model"], "input_size": health["input_size"],
                       "device": health["device"], "extra_args": extra},
            "image_bytes": len(client.body),
            "sequential": summary(seq),
            "concurrent": dict(summary(conc), clients=a.concurrency, errors=len(conc_errors),
                               requests_per_s=round(len(conc) / conc_s, 2), **conc_batches),
            "memory": {"requests": a.memory_requests, "errors": len(mem_errors),
                       "rss_before_kib": before and before["VmRSS"], "rss_after_kib": after and after["VmRSS"],
                       "peak_rss_kib": after and after["VmHWM"],
                       "requests_per_s": round(len(mem_times) / mem_s, 2), **mem_batches,
                       **({"latency": summary(mem_times)} if mem_times else {})},
        }
        print(json.dumps(out, indent=2))
    finally:
        if proc:
            proc.terminate()
            proc.wait(30)


def batch_counts(u, since=None):
    """The server's images explained and batches run (from /api/health); with since, the counts
    of the phase since then and its mean batch size. {} for a server that does not report them."""
    h = json.loads(http_get(u.hostname, u.port, "/api/health"))
    if "batches" not in h:
        return {}
    now = {"images": h["images_explained"], "batches": h["batches"]}
    if not since:
        return now
    images, batches = now["images"] - since["images"], now["batches"] - since["batches"]
    return {"batches": batches, "mean_batch": round(images / batches, 2) if batches else None}


def http_get(host, port, path):
    conn = http.client.HTTPConnection(host, port, timeout=30)
    try:
        conn.request("GET", path)
        return conn.getresponse().read()
    finally:
        conn.close()


if __name__ == "__main__":
    main()
