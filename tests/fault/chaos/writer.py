#!/usr/bin/env python3
"""writer.py: one node's writer in the chaos run (tests/fault/chaos.sh).

    writer.py NODEDIR NAME ROLE SITES SEED ACKED STOPFILE

Writes through the node's local API (POST /v1/records/TYPE/ID, the node's
integration token, as `trialsync put` does) until STOPFILE exists.  Every
write the API acknowledged (HTTP 200) is appended to ACKED as one JSON line:
the node, the record, the fields and values sent, and the origin, lane and
seq the answer named, so the checker (check.py) can look for that exact
version everywhere it must be.  A refused write (4xx) or one that failed
(node killed, stopped or unreachable) is counted, never logged as
acknowledged; a write whose answer never came may still be applied, which is
no violation: the checker only demands what was acknowledged.

ROLE site: SITES is the site's own id; it creates its subjects, visits and
adverse events (some serious: the safety lane) and corrects its subjects.
ROLE hub: SITES is every site id, comma-separated; it opens queries on the
sites' subjects and corrects the same subject fields the sites correct, so
hub and site edit one record concurrently.  Every choice comes from SEED.
"""
import http.client
import json
import os
import random
import sys
import time
import urllib.parse

# A request that takes longer than this (a stopped or partitioned node) is
# abandoned as failed; the write may still land, which is allowed.
REQUEST_TIMEOUT_S = 10
# How often a hub writer refreshes the list of subjects it can target.
HUB_REFRESH_EVERY = 25
# The pause after a write that got no answer (node killed or cut off).
FAILED_PAUSE_S = 0.2


def read_conf(node_dir):
    """The API address and token of a node, from its node.conf."""
    section, host, port, token_file = "", "127.0.0.1", 7801, "api.token"
    with open(os.path.join(node_dir, "node.conf"), encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = (part.strip() for part in line.partition("="))
            if section == "api" and key == "listen":
                host, _, p = value.rpartition(":")
                port = int(p)
            elif section == "api" and key == "token_file":
                token_file = value
    if not os.path.isabs(token_file):
        token_file = os.path.join(node_dir, token_file)
    with open(token_file, encoding="utf-8") as f:
        token = f.read().strip()
    return host, port, token


class Api:
    def __init__(self, node_dir):
        self.host, self.port, self.token = read_conf(node_dir)

    def request(self, method, path, body=None):
        """(status, parsed JSON or None); status 0 when no answer came."""
        conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT_S)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data, headers={
                "Authorization": "Bearer " + self.token,
                "Content-Type": "application/json", "Connection": "close"})
            res = conn.getresponse()
            raw = res.read()
            try:
                return res.status, json.loads(raw)
            except ValueError:
                return res.status, None
        except (OSError, http.client.HTTPException):
            return 0, None
        finally:
            conn.close()


def main():
    node_dir, name, role, sites, seed, acked_path, stop_path = sys.argv[1:8]
    rng = random.Random(int(seed))
    api = Api(node_dir)
    sites = sites.split(",")
    counts = {"acked": 0, "refused": 0, "failed": 0}
    refusals = {}
    state = {"subjects": [], "aes": 0, "visits": 0, "queries": 0, "n": 0}
    acked = open(acked_path, "a", encoding="utf-8")

    def put(rtype, rid, fields, reason=None):
        body = {"fields": fields, "user": "chaos-" + name}
        if reason is not None:
            body["reason"] = reason
        path = "/v1/records/%s/%s" % (rtype, urllib.parse.quote(rid, safe="-/"))
        status, ans = api.request("POST", path, body)
        if status == 200 and ans is not None and ans.get("ok"):
            acked.write(json.dumps({"node": name, "type": rtype, "id": rid, "fields": fields,
                                    "origin": ans["origin"], "lane": ans["lane"],
                                    "seq": ans["seq"], "hlc": ans["hlc"]}, sort_keys=True) + "\n")
            acked.flush()
            counts["acked"] += 1
            return True
        if status == 0:
            counts["failed"] += 1
            # The node is down or unreachable: do not spin on it.
            time.sleep(FAILED_PAUSE_S)
        else:
            counts["refused"] += 1
            msg = (ans or {}).get("error", "HTTP %d" % status)[:120]
            refusals[msg] = refusals.get(msg, 0) + 1
        return False

    def date():
        return "2026-%02d-%02d" % (rng.randint(1, 11), rng.randint(1, 28))

    def site_step(site):
        subs = state["subjects"]
        op = rng.random()
        if not subs or op < 0.35:
            sid = "%s-%04d" % (site, len(subs) + 1)
            if put("subject", sid, {"site": site, "sex": rng.choice("MFU"),
                                    "brthdtc": "19%02d-%02d" % (rng.randint(30, 99), rng.randint(1, 12)),
                                    "status": "screening"}):
                subs.append(sid)
            elif sid not in subs:
                # Not acknowledged: it may exist anyway; later writes may touch it.
                subs.append(sid)
        elif op < 0.6:
            sid = rng.choice(subs)
            put("subject", sid, correction(), reason="site correction %d" % state["n"])
        elif op < 0.8:
            state["visits"] += 1
            sid = rng.choice(subs)
            put("visit", "%s/V%d" % (sid, state["visits"]),
                {"svstdtc": date(), "svoccur": "Y", "status": "completed"})
        else:
            state["aes"] += 1
            sid = rng.choice(subs)
            fields = {"aeterm": "Event %d of %s" % (state["aes"], name), "aestdtc": date(),
                      "aesev": rng.choice(["MILD", "MODERATE", "SEVERE"]), "status": "ongoing"}
            fields["aeser"] = "Y" if rng.random() < 0.2 else "N"
            put("ae", "%s-AE-%03d" % (sid, state["aes"]), fields)

    def correction():
        if rng.random() < 0.5:
            return {"sex": rng.choice("MFU")}
        return {"brthdtc": "19%02d-%02d" % (rng.randint(30, 99), rng.randint(1, 12))}

    def hub_refresh():
        status, ans = api.request("GET", "/v1/records?type=subject")
        if status == 200 and ans is not None:
            state["subjects"] = [r["id"] for r in ans.get("records", [])
                                 if r["id"].split("-")[0] in sites]

    def hub_step():
        if state["n"] % HUB_REFRESH_EVERY == 0 or not state["subjects"]:
            hub_refresh()
        subs = state["subjects"]
        if not subs:
            time.sleep(0.2)
            return
        sid = rng.choice(subs)
        if rng.random() < 0.5:
            state["queries"] += 1
            field = rng.choice(["sex", "brthdtc"])
            put("query", "Q-%s-%d" % (name, state["queries"]),
                {"target": "subject/%s/%s" % (sid, field),
                 "text": "Please confirm %s (%s #%d)" % (field, name, state["queries"]),
                 "state": "open", "source": rng.choice(["dm", "monitor"])})
        else:
            put("subject", sid, correction(), reason="hub correction %d" % state["n"])

    while not os.path.exists(stop_path):
        state["n"] += 1
        if role == "site":
            site_step(sites[0])
        else:
            hub_step()
    acked.close()
    print("writer %s: %d acknowledged, %d refused, %d failed (no answer)"
          % (name, counts["acked"], counts["refused"], counts["failed"]))
    for msg, n in sorted(refusals.items(), key=lambda kv: -kv[1])[:5]:
        print("writer %s: refused %d times: %s" % (name, n, msg))


if __name__ == "__main__":
    main()
