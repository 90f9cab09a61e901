#!/usr/bin/python3
"""ts_api_abuse.py: a load generator that abuses a node's local HTTP API
(and, in silent mode, any TCP port: the peer port's handshake slots).

Test-only.  Two kinds of abuse, each for --seconds, then a one-line summary
on stdout ("key=value ..."), so a suite can run it in the background and
check what the node did meanwhile:

  flood      --conns N connections at once, each an unauthenticated POST
             with a --body-bytes body (Content-Length announced, then the
             body sent as fast as the node takes it); a connection the node
             answers or closes is opened again at once.
  slowloris  --conns N connections at once, each sending the headers of a
             GET one byte a second and never finishing them; a connection
             the node closes is opened again at its next second.
  silent     --conns N connections at once that never send a byte; one the
             node closes is opened again at its next second.

Probes, each a single check that prints what it saw:

  probe-body     an unauthenticated POST announcing a --body-bytes body sends
                 its headers only and waits (up to --seconds) for the answer:
                 prints "status=401 body_read_first=0" when the node answered
                 before the body was sent.
  probe-timeout  sends half a request's headers and waits (up to --seconds)
                 for the node to close: prints "closed_after_s=N" or
                 "closed_after_s=-1".
  hold-authed    opens --conns connections with authenticated POST headers
                 (--token-file) announcing a body that never comes, then one
                 more; prints the status line that last one got
                 ("extra_status=503") and holds the rest until --seconds.

--sources K spreads the connections over 127.0.0.1 .. 127.0.0.K (loopback
holds all of 127/8), so both a per-address and a global cap can be reached.
"""
import argparse
import resource
import selectors
import socket
import sys
import time


def source_addr(i, sources):
    return "127.0.0.%d" % (1 + i % sources)


def open_conn(host, port, src):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.bind((src, 0))
        s.connect((host, port))
    except BlockingIOError:
        pass
    except OSError:
        s.close()
        return None
    return s


def raise_fd_limit(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, need + 64))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def flood(a):
    body = b"x" * a.body_bytes
    head = ("POST /v1/records/subject/101-0001 HTTP/1.1\r\nHost: %s\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
            % (a.host, len(body))).encode()
    payload = head + body
    sel = selectors.DefaultSelector()
    stats = {"opened": 0, "status_401": 0, "status_503": 0, "status_other": 0,
             "closed_unanswered": 0, "body_bytes_sent": 0, "body_sent_whole": 0}
    end = time.monotonic() + a.seconds

    def start(i):
        s = open_conn(a.host, a.port, source_addr(i, a.sources))
        if s is None:
            return
        stats["opened"] += 1
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE,
                     {"i": i, "off": 0, "rx": b""})

    def finish(key):
        d = key.data
        rx = d["rx"]
        if rx.startswith(b"HTTP/1.1 401"):
            stats["status_401"] += 1
        elif rx.startswith(b"HTTP/1.1 503"):
            stats["status_503"] += 1
        elif rx:
            stats["status_other"] += 1
        else:
            stats["closed_unanswered"] += 1
        stats["body_bytes_sent"] += max(0, d["off"] - len(head))
        if d["off"] == len(payload):
            stats["body_sent_whole"] += 1
        sel.unregister(key.fileobj)
        key.fileobj.close()
        if time.monotonic() < end:
            start(d["i"])

    for i in range(a.conns):
        start(i)
    while time.monotonic() < end:
        for key, ev in sel.select(timeout=0.2):
            d = key.data
            s = key.fileobj
            try:
                if ev & selectors.EVENT_WRITE and d["off"] < len(payload):
                    d["off"] += s.send(payload[d["off"]:d["off"] + 65536])
                    if d["off"] == len(payload):
                        sel.modify(s, selectors.EVENT_READ, d)
                if ev & selectors.EVENT_READ:
                    chunk = s.recv(4096)
                    if not chunk:
                        finish(key)
                        continue
                    d["rx"] += chunk[:64]
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                finish(key)
    for key in list(sel.get_map().values()):
        key.fileobj.close()
    return stats


def silent(a):
    return slowloris(a, b"")


def slowloris(a, req=None):
    if req is None:
        req = ("GET /v1/status HTTP/1.1\r\nHost: %s\r\nUser-Agent: slow\r\n" % a.host).encode()
        req += b"X-Padding: " + b"a" * 4096
    conns = [None] * a.conns
    offs = [0] * a.conns
    stats = {"opened": 0, "closed_by_node": 0}
    end = time.monotonic() + a.seconds
    next_tick = time.monotonic()
    while time.monotonic() < end:
        for i in range(a.conns):
            s = conns[i]
            if s is not None:
                try:
                    # A closed connection reads as EOF; anything else is ignored.
                    if s.recv(4096) == b"":
                        raise ConnectionResetError()
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    s.close()
                    s = conns[i] = None
                    stats["closed_by_node"] += 1
            if s is None:
                s = conns[i] = open_conn(a.host, a.port, source_addr(i, a.sources))
                offs[i] = 0
                if s is not None:
                    stats["opened"] += 1
                continue
            if not req:
                continue
            try:
                s.send(req[offs[i] % len(req):offs[i] % len(req) + 1])
                offs[i] += 1
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                s.close()
                conns[i] = None
                stats["closed_by_node"] += 1
        next_tick += 1.0
        pause = next_tick - time.monotonic()
        if pause > 0:
            time.sleep(pause)
    stats["open_at_end"] = sum(1 for s in conns if s is not None)
    for s in conns:
        if s is not None:
            s.close()
    return stats


def read_answer(s, seconds):
    s.settimeout(seconds)
    try:
        return s.recv(4096)
    except OSError:
        return b""


def probe_body(a):
    s = socket.create_connection((a.host, a.port), timeout=a.seconds)
    s.sendall(("POST /v1/records/subject/101-0001 HTTP/1.1\r\nHost: %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % (a.host, a.body_bytes)).encode())
    rx = read_answer(s, a.seconds)
    s.close()
    status = int(rx[9:12]) if rx.startswith(b"HTTP/1.1 ") else 0
    return {"status": status, "body_read_first": 0}


def probe_timeout(a):
    s = socket.create_connection((a.host, a.port), timeout=a.seconds)
    t0 = time.monotonic()
    s.sendall(("GET /v1/status HTTP/1.1\r\nHost: %s\r\n" % a.host).encode())
    rx = read_answer(s, a.seconds)
    s.close()
    closed = rx == b"" and time.monotonic() - t0 < a.seconds
    return {"closed_after_s": int(time.monotonic() - t0) if closed else -1}


def hold_authed(a):
    with open(a.token_file) as f:
        token = f.read().strip()
    head = ("POST /v1/records/subject/101-0001 HTTP/1.1\r\nHost: %s\r\n"
            "Authorization: Bearer %s\r\nContent-Type: application/json\r\n"
            "Content-Length: 1000\r\n\r\n" % (a.host, token)).encode()
    src = source_addr(0, a.sources)
    held = []
    for _ in range(a.conns):
        s = socket.create_connection((a.host, a.port), timeout=a.seconds,
                                     source_address=(src, 0))
        s.sendall(head)
        held.append(s)
        time.sleep(0.01)  # so the node has read each one's headers
    time.sleep(0.5)
    extra = socket.create_connection((a.host, a.port), timeout=a.seconds,
                                     source_address=(src, 0))
    rx = read_answer(extra, a.seconds)
    extra.close()
    status = int(rx[9:12]) if rx.startswith(b"HTTP/1.1 ") else 0
    still_open = 0
    for s in held:
        s.setblocking(False)
        try:
            still_open += 1 if s.recv(1) != b"" else 0
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
        s.close()
    return {"extra_status": status, "held_open": still_open}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=["flood", "slowloris", "silent", "probe-body",
                                    "probe-timeout", "hold-authed"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=1000)
    p.add_argument("--body-bytes", type=int, default=250 * 1000)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--sources", type=int, default=1)
    p.add_argument("--token-file")
    a = p.parse_args()
    if a.sources < 1 or a.sources > 250:
        p.error("--sources must be 1 to 250")
    raise_fd_limit(a.conns)
    modes = {"flood": flood, "slowloris": slowloris, "silent": silent, "probe-body": probe_body,
             "probe-timeout": probe_timeout, "hold-authed": hold_authed}
    stats = modes[a.mode](a)
    print(a.mode + " " + " ".join("%s=%d" % kv for kv in sorted(stats.items())))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
