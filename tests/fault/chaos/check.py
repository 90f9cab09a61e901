#!/usr/bin/env python3
"""check.py: the history checker of the chaos run (tests/fault/chaos.sh).

    check.py SEED ACKED NODE...     NODE = name:role:origin:site:audit.ndjson

ACKED holds every acknowledged write, one JSON line each (writer.py).  Each
NODE names a node (role hub or site; its origin id; its site id, "-" at a
hub) and the file of its `trialsync export --format audit --audit-format
ndjson`, taken from its stopped store: one line per field write of every
version the node holds, with the entry's origin node, lane, seq and chain
hash.  An entry (origin, lane, seq) is rebuilt from its field writes.

What it proves, or exits 1 naming the first violation (and the seed):
  1. every acknowledged write is held, as that version (same record, same
     value of every field it wrote, the origin/lane/seq its answer named), at
     its origin, at every hub, and at the site its record belongs to;
  2. no (origin, lane, seq) stands for two different contents: not two
     records at one node, not two contents (record, field values, user,
     reason, writer's time, chain hash) at two nodes;
  3. each hub holds every chain it holds without a gap (seq 1..head);
  4. no site holds another site's subjects, visits, adverse events or
     queries on them.
"""
import json
import sys

# Violations printed after the first, so one run shows the pattern.
MORE_SHOWN = 9


def record_site(rtype, rid, fields=None):
    """The site a record belongs to (its subject's prefix), or None."""
    if rtype in ("subject", "visit", "ae"):
        return rid.split("-", 1)[0]
    if rtype == "query" and fields is not None and "target" in fields:
        # target = subject/101-0003/sex
        parts = fields["target"].split("/")
        if len(parts) >= 2:
            return parts[1].split("-", 1)[0]
    return None


def load_node(path):
    """{(origin, lane, seq): entry} from one audit export; entry is a dict."""
    entries = {}
    dup = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = json.loads(line)
            key = (row["node"], row["lane"], int(row["seq"]))
            rec = (row["record_type"], row["record_id"])
            e = entries.get(key)
            if e is None:
                e = {"record": rec, "writes": {}, "user": row.get("user", ""),
                     "reason": row.get("reason", ""), "entry_time": row.get("entry_time", ""),
                     "hash": row.get("entry_hash", "")}
                entries[key] = e
            elif e["record"] != rec:
                dup.append("%s:%d: %s/%s/%d names record %s/%s and %s/%s" %
                           (path, lineno, key[0], key[1], key[2], e["record"][0], e["record"][1],
                            rec[0], rec[1]))
                continue
            elif (e["hash"], e["user"], e["entry_time"]) != (row.get("entry_hash", ""),
                                                             row.get("user", ""),
                                                             row.get("entry_time", "")):
                dup.append("%s:%d: %s/%s/%d has two hashes, users or times in one node" %
                           (path, lineno, key[0], key[1], key[2]))
            if row["field"] in e["writes"] and e["writes"][row["field"]] != row["new"]:
                dup.append("%s:%d: %s/%s/%d writes field %s twice" %
                           (path, lineno, key[0], key[1], key[2], row["field"]))
            e["writes"][row["field"]] = row["new"]
    return entries, dup


def content(e):
    return (e["record"], tuple(sorted(e["writes"].items())), e["user"], e["reason"],
            e["entry_time"], e["hash"])


def main():
    seed, acked_path = sys.argv[1], sys.argv[2]
    nodes = []
    for spec in sys.argv[3:]:
        name, role, origin, site, path = spec.split(":", 4)
        nodes.append({"name": name, "role": role, "origin": origin, "site": site, "path": path})
    violations = []

    held = {}
    for n in nodes:
        held[n["name"]], dup = load_node(n["path"])
        violations.extend("seq reused at %s: %s" % (n["name"], d) for d in dup)
    by_origin = {n["origin"]: n["name"] for n in nodes}
    hubs = [n["name"] for n in nodes if n["role"] == "hub"]
    site_node = {n["site"]: n["name"] for n in nodes if n["role"] == "site"}

    # 1. Every acknowledged write, as that version, everywhere it must be.
    acked = 0
    with open(acked_path, encoding="utf-8") as f:
        for line in f:
            if not line.strip():
                continue
            w = json.loads(line)
            acked += 1
            key = (w["origin"], w["lane"], int(w["seq"]))
            what = "acknowledged write %s/%s %s by %s (origin %s, %s lane, seq %d)" % (
                w["type"], w["id"], json.dumps(w["fields"], sort_keys=True), w["node"],
                key[0], key[1], key[2])
            if by_origin.get(w["origin"]) != w["node"]:
                violations.append("%s: answered by %s with another node's origin" % (what, w["node"]))
                continue
            site = record_site(w["type"], w["id"], w["fields"])
            must = set(hubs) | {w["node"]}
            if site in site_node:
                must.add(site_node[site])
            for name in sorted(must):
                e = held[name].get(key)
                if e is None:
                    violations.append("%s: missing at %s" % (what, name))
                    continue
                if e["record"] != (w["type"], w["id"]):
                    violations.append("%s: at %s that seq is record %s/%s" %
                                      (what, name, e["record"][0], e["record"][1]))
                    continue
                for field, value in w["fields"].items():
                    if e["writes"].get(field) != value:
                        violations.append("%s: at %s field %s is %r" %
                                          (what, name, field, e["writes"].get(field)))

    # 2. One content per (origin, lane, seq) across nodes.
    first = {}
    for n in nodes:
        for key, e in held[n["name"]].items():
            c = content(e)
            if key not in first:
                first[key] = (n["name"], c)
            elif first[key][1] != c:
                violations.append("seq reused for different content: %s/%s/%d is %r at %s and %r at %s"
                                  % (key[0], key[1], key[2], first[key][1], first[key][0], c,
                                     n["name"]))

    # 3. Hubs hold their chains without gaps.
    for name in hubs:
        heads = {}
        for (origin, lane, seq) in held[name]:
            heads.setdefault((origin, lane), set()).add(seq)
        for (origin, lane), seqs in sorted(heads.items()):
            if len(seqs) != max(seqs):
                gap = min(set(range(1, max(seqs) + 1)) - seqs)
                violations.append("hub %s holds chain %s/%s up to seq %d with a gap at seq %d" %
                                  (name, origin, lane, max(seqs), gap))

    # 4. A site's data is its own.
    for n in nodes:
        if n["role"] != "site":
            continue
        for key, e in held[n["name"]].items():
            s = record_site(e["record"][0], e["record"][1], e["writes"])
            if s is not None and s != n["site"] and e["record"][0] != "query":
                violations.append("site %s holds %s/%s of site %s" %
                                  (n["site"], e["record"][0], e["record"][1], s))

    versions = sum(len(h) for h in held.values())
    print("checker: %d acknowledged writes, %d entries over %d nodes (%s)" % (
        acked, versions, len(nodes),
        ", ".join("%s %d" % (n["name"], len(held[n["name"]])) for n in nodes)))
    if violations:
        print("checker: %d violations (seed %s); the first:" % (len(violations), seed))
        for v in violations[:1 + MORE_SHOWN]:
            print("  " + v)
        sys.exit(1)
    print("checker: every acknowledged write is held at its origin, every hub and its site; "
          "no seq reused for different content; hub chains without gaps; no site holds another's data")


if __name__ == "__main__":
    main()
