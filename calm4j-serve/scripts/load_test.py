"""A bounded load test of a running `calm serve` on loopback: C concurrent clients send R requests in all
(fixed-length completions: ignore_eos), and report throughput, latency percentiles, the server's peak RSS and the
answers by status. Standard library only.

usage: load_test.py BASE_URL CLIENTS REQUESTS MAX_TOKENS SERVER_PID [API_KEY]
"""
import http.client
import json
import sys
import threading
import time
from urllib.parse import urlparse

base, clients, total, max_tokens, pid = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
key = sys.argv[6] if len(sys.argv) > 6 else None
u = urlparse(base)
lock = threading.Lock()
next_request = [0]
latencies, statuses, tokens, other = [], {}, [0], []


def client(worker):
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    while True:
        with lock:
            if next_request[0] >= total:
                break
            i = next_request[0]
            next_request[0] += 1
        body = json.dumps({"prompt": "<s>%d+%d=" % (i % 97, worker), "max_tokens": max_tokens, "temperature": 0,
                           "ignore_eos": True})
        headers = {"Content-Type": "application/json"}
        if key:
            headers["Authorization"] = "Bearer " + key
        t0 = time.perf_counter()
        try:
            conn.request("POST", "/v1/completions", body, headers)
            r = conn.getresponse()
            data = r.read()
            dt = time.perf_counter() - t0
            with lock:
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status == 200:
                    latencies.append(dt)
                    tokens[0] += json.loads(data)["usage"]["completion_tokens"]
                elif r.status == 503:
                    if r.getheader("Retry-After") is None or "error" not in json.loads(data):
                        other.append("503 without Retry-After or error body")
                else:
                    other.append("%d %s" % (r.status, data[:200]))
        except Exception as e:   # noqa: BLE001 - any failure is counted, the test goes on
            with lock:
                other.append(repr(e))
            conn.close()
            conn = http.client.HTTPConnection(u.hostname, u.port, timeout=300)
    conn.close()


def peak_rss_mib():
    with open("/proc/%s/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


start = time.perf_counter()
threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wall = time.perf_counter() - start
latencies.sort()


def pct(p):
    return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")


print(json.dumps({"clients": clients, "requests": total, "ok": statuses.get(200, 0), "rejected_503": statuses.get(503, 0),
                  "errors": len(other), "tokens": tokens[0], "seconds": round(wall, 2),
                  "tokens_per_s": round(tokens[0] / wall, 1), "p50_s": round(pct(0.5), 3), "p99_s": round(pct(0.99), 3),
                  "peak_rss_mib": round(peak_rss_mib()), "error_samples": other[:3]}))
