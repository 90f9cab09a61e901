#!/usr/bin/env bash
# trialsync export: a hub and two sites with subjects, visits, AEs (one SAE,
# one AE coded at the hub), a query, a conflict, an entered-in-error subject,
# e-signatures (one valid, one broken by a later edit) and SDV marks (one
# verified, one needing re-verification).  Every ODM file validates against
# CDISC's ODM 1.3.2 schema, every Dataset-JSON file against the Dataset-JSON
# 1.1 schema; the SDTM CSV read back equals what `trialsync get` shows; a
# site's export holds none of the other site's records; exports with the same
# --as-of are byte-identical, also taken while the node runs, after it
# stopped and on two converged hubs; --as-of a time between two sets of
# writes gives the clinical content exported before the second set.
. "$(dirname "$0")/lib.sh"

need_cmd xmllint libxml2-utils
need_cmd sha256sum coreutils
need_cmd diff diffutils
# Debian's jsonschema (and the /usr/bin/python3 it runs on) is called by
# absolute path: a python3 earlier on PATH (pyenv, a venv) may lack the module.
need_cmd jsonschema python3-jsonschema
PY=/usr/bin/python3
JSONSCHEMA=/usr/bin/jsonschema
SHARED="$TS_SRC/../shared/data"
ODM_XSD="$SHARED/cdisc-odm-1.3.2/ODM1-3-2.xsd"
DSJ_SCHEMA="$SHARED/cdisc-dataset-json-1.1/dataset.schema.json"
[ -f "$ODM_XSD" ] || fail "no ODM schema at $ODM_XSD (the shared folder sits beside the project root)"
[ -f "$DSJ_SCHEMA" ] || fail "no Dataset-JSON schema at $DSJ_SCHEMA"

hub_and_two_sites T-EXP

put() { "$TRIALSYNC" put --node "$@" > /dev/null || fail "put $*"; }
put "$S1" subject 101-0001 site=101 sex=F brthdtc=1961-04 rficdtc=2026-01-10 armcd=A status=enrolled
put "$S1" subject 101-0002 site=101 sex=M status=screening
put "$S1" subject 101-0003 site=101 sex=F status=screening
put "$S1" subject 101-0003 eie=Y --reason "duplicate of 101-0002"
put "$S1" subject 101-0002 dsdecod=COMPLETED dsstdtc=2026-03-01 status=enrolled --reason "consented"
put "$S1" visit 101-0001/V1 svstdtc=2026-01-10 svoccur=Y status=completed
put "$S1" visit 101-0001/V2 svstdtc=2026-02-10 svoccur=Y status=started
put "$S1" ae 101-0001-AE-001 'aeterm=Headache, "throbbing"' aestdtc=2026-01-12 aesev=MILD \
    aetoxgr=1 aeser=N status=ongoing
put "$S1" ae 101-0001-AE-002 aeterm=Anaphylaxis aestdtc=2026-02-11 aesev=SEVERE aeser=Y \
    aeslife=Y sae_aware_dtc="$(date -u +%Y-%m-%dT%H:%M:%SZ)" status=ongoing
put "$S2" subject 102-0001 site=102 sex=M status=enrolled
put "$S2" visit 102-0001/V1 svstdtc=2026-01-20 svoccur=Y status=completed
put "$S2" ae 102-0001-AE-001 aeterm=Nausea aestdtc=2026-01-21 aesev=MODERATE aeser=N status=ongoing
wait_until 60 "hub holds the 4 subjects" \
    bash -c "[ \$('$TRIALSYNC' records --node '$HUB' subject | jq .count) -eq 4 ]"
wait_until 60 "hub holds the 3 AEs" \
    bash -c "[ \$('$TRIALSYNC' records --node '$HUB' ae | jq .count) -eq 3 ]"
put "$HUB" ae 101-0001-AE-001 aedecod=Headache aeptcd=10019211 'aebodsys=Nervous system disorders' \
    aesoccd=10029205 meddra_ver=26.1 --user coder
put "$HUB" query Q-hub1-1 target=ae/101-0001-AE-001/aesev text="Please confirm the severity" \
    state=open source=dm --user dm

# A conflict: the site and the hub change one field, each without seeing the other.
stop_node hub
put "$S1" subject 101-0001 sex=M --reason "site: transcription error" --user crc
stop_node s101
start_node hub "$HUB"
put "$HUB" subject 101-0001 sex=U --reason "monitor: source says unknown" --user monitor
start_node s101 "$S1"
wait_until 60 "conflict at the hub" bash -c \
    "'$TRIALSYNC' get --node '$HUB' subject 101-0001 | jq -e '.fields.sex.conflict'"
wait_until 60 "conflict at site 101" bash -c \
    "'$TRIALSYNC' get --node '$S1' subject 101-0001 | jq -e '.fields.sex.conflict'"
wait_until 60 "query at site 101" "$TRIALSYNC" get --node "$S1" query Q-hub1-1
wait_until 60 "hub and site 101 agree on the AE coding" bash -c \
    "[ \"\$('$TRIALSYNC' get --node '$S1' ae 101-0001-AE-001 | jq -r .fields.aedecod.value)\" = Headache ]"
ok "scenario written and replicated"

# Signatures and SDV marks: inv101 signs visit 101-0001/V1 (a later site edit
# breaks it) and subject 101-0002's casebook (still valid); a monitor verifies
# AE 101-0001-AE-001 (still verified) and V2's start date (edited afterwards:
# needs re-verification).
add_user inv101 investigator --site 101
add_user mon monitor
wait_until 60 "inv101's account at site 101" "$TRIALSYNC" get --node "$S1" user inv101
sign_() {
    as inv101 sign --node "$S1" "$@" --secret-file "$WORK/trial/users/inv101.token" \
        > "$WORK/sign.out" 2>&1 || fail "sign $*: $(cat "$WORK/sign.out")"
}
sign_ visit 101-0001/V1 --meaning approval
sign_ subject 101-0002 --meaning review
as mon sdv --node "$HUB" ae 101-0001-AE-001 > /dev/null || fail "SDV of the AE"
as mon sdv --node "$HUB" visit 101-0001/V2 --fields svstdtc > /dev/null || fail "SDV of V2"
put "$S1" visit 101-0001/V1 svendtc=2026-01-10 --reason "end date from the source"
put "$S1" visit 101-0001/V2 svstdtc=2026-02-11 --reason "start date from the source"
wait_until 60 "the hub shows V1's signature broken" bash -c \
    "'$TRIALSYNC' get --node '$HUB' visit 101-0001/V1 | jq -e '.signatures[0].state == \"broken\"'"
wait_until 60 "the hub shows 101-0002's signature" bash -c \
    "'$TRIALSYNC' get --node '$HUB' subject 101-0002 | jq -e '.signatures[0].state == \"valid\"'"
wait_until 60 "the hub shows V2's mark needing re-verification" bash -c \
    "'$TRIALSYNC' get --node '$HUB' visit 101-0001/V2 | jq -e '.sdv[0].state == \"needs re-verification\"'"
wait_until 60 "site 101 holds the marks" bash -c \
    "'$TRIALSYNC' get --node '$S1' ae 101-0001-AE-001 | jq -e '.sdv[0].state == \"verified\"'"
ok "signatures and SDV marks written; their states derived at the hub"

export_() { "$TRIALSYNC" export "$@" 2> "$WORK/export.err" || fail "export $*: $(cat "$WORK/export.err")"; }

# ---- ODM ----
AS_OF=2030-01-01T00:00:00Z
export_ --node "$HUB" --format odm --out "$WORK/hub.xml" --as-of "$AS_OF"
export_ --node "$S1" --format odm --out "$WORK/s101.xml" --as-of "$AS_OF"
export_ --node "$S2" --format odm --out "$WORK/s102.xml" --as-of "$AS_OF"
export_ --node "$HUB" --format odm --site 102 --out "$WORK/hub-102.xml" --as-of "$AS_OF"
export_ --node "$HUB" --format odm --subject 101-0001 --out "$WORK/hub-subj.xml"
for f in hub s101 s102 hub-102 hub-subj; do
    xmllint --nonet --noout --schema "$ODM_XSD" "$WORK/$f.xml" 2> "$WORK/xmllint.err" \
        || fail "$f.xml does not validate: $(head -5 "$WORK/xmllint.err")"
done
ok "every ODM export validates against ODM1-3-2.xsd (xmllint --nonet)"
"$PY" - "$WORK/hub.xml" <<'EOF' || fail "ODM references"
import sys, xml.etree.ElementTree as ET
ns = {"o": "http://www.cdisc.org/ns/odm/v1.3"}
root = ET.parse(sys.argv[1]).getroot()
defs = {e.get("OID") for e in root.iter("{%s}ItemDef" % ns["o"])}
lists = {e.get("OID") for e in root.iter("{%s}CodeList" % ns["o"])}
used = {e.get("ItemOID") for e in root.iter("{%s}ItemData" % ns["o"])}
assert used and used <= defs, used - defs
assert {e.get("CodeListOID") for e in root.iter("{%s}CodeListRef" % ns["o"])} <= lists
locs = {e.get("OID") for e in root.iter("{%s}Location" % ns["o"])}
assert {e.get("LocationOID") for e in root.iter("{%s}SiteRef" % ns["o"])} <= locs
assert root.get("FileType") == "Snapshot" and root.get("CreationDateTime") == "2030-01-01T00:00:00Z"
EOF
ok "every ItemOID, CodeListOID and LocationOID used in the hub's ODM is defined"
assert_eq 4 "$(grep -c '<SubjectData ' "$WORK/hub.xml")" "the hub's ODM holds the 4 subjects"
grep -A2 'ItemOID="IT.DM.SEX"' "$WORK/hub.xml" | grep -q '<Comment SponsorOrSite="Sponsor">conflict: 2 concurrent values' \
    || fail "conflict not annotated"
ok "the conflicting SEX carries an Annotation naming both values"
assert_contains "$(cat "$WORK/hub.xml")" 'ItemOID="IT.AE.AEDECOD" Value="Headache"' "the hub's ODM holds the coding"
grep -q '102-' "$WORK/s101.xml" && fail "site 101's ODM names a site 102 record"
grep -q '101-' "$WORK/s102.xml" && fail "site 102's ODM names a site 101 record"
grep -q '101-' "$WORK/hub-102.xml" && fail "--site 102 at the hub names a site 101 record"
ok "a site's ODM holds none of the other site's records, nor does the hub's --site export"
assert_eq 1 "$(grep -c '<SubjectData ' "$WORK/hub-subj.xml")" "--subject exports one subject"
"$PY" - "$WORK/hub.xml" <<'EOF' || fail "ODM signatures and SDV marks"
import sys, xml.etree.ElementTree as ET
O = "{http://www.cdisc.org/ns/odm/v1.3}"
root = ET.parse(sys.argv[1]).getroot()
users = {e.get("OID") for e in root.iter(O + "User")}
locs = {e.get("OID") for e in root.iter(O + "Location")}
sdefs = {e.get("OID"): e.find(O + "Meaning").text for e in root.iter(O + "SignatureDef")}
assert sdefs.get("SD.review") == "review" and sdefs.get("SD.approval") == "approval", sdefs
subj = {sd.get("SubjectKey"): sd for sd in root.iter(O + "SubjectData")}
sig = subj["101-0002"].find(O + "Signature")
assert sig is not None, "no Signature on 101-0002's casebook"
assert sig.find(O + "UserRef").get("UserOID") == "USR.inv101" and "USR.inv101" in users
assert sig.find(O + "LocationRef").get("LocationOID") == "LOC.101" and "LOC.101" in locs
assert sig.find(O + "SignatureRef").get("SignatureOID") == "SD.review"
assert sig.find(O + "DateTimeStamp").text.endswith("Z")
def event(subject, key):
    for se in subj[subject].findall(O + "StudyEventData"):
        if se.get("StudyEventRepeatKey") == key:
            return se
def notes(el):
    return [a.find(O + "Comment").text for a in el.findall(O + "Annotation")]
v1 = event("101-0001", "V1")
assert v1.find(O + "Signature") is None, "a broken signature written as a Signature"
assert any(n.startswith("signature 101-0001-SIG-001 (approval) by inv101") and n.endswith(": broken")
           for n in notes(v1)), notes(v1)
assert any(n.startswith("SDV ") and " of svstdtc by mon " in n and n.endswith(": needs re-verification")
           for n in notes(event("101-0001", "V2"))), notes(event("101-0001", "V2"))
ae = [f for se in subj["101-0001"].findall(O + "StudyEventData") for f in se.findall(O + "FormData")
      if f.get("FormRepeatKey") == "001"][0]
assert any(n.endswith(": verified") and " of every field by mon " in n for n in notes(ae)), notes(ae)
assert any(n.endswith(": valid") for n in notes(subj["101-0002"])), notes(subj["101-0002"])
EOF
ok "ODM: the valid casebook signature is a Signature (UserRef, LocationRef, SignatureRef, DateTimeStamp) with its SignatureDef"
ok "ODM: the broken signature and both SDV marks are Annotations with their derived state"

# ---- ODM transactional: the audit trail as ODM ----
export_ --node "$HUB" --format odm-audit --out "$WORK/hub-audit.xml" --as-of "$AS_OF"
export_ --node "$S2" --format odm-audit --out "$WORK/s102-audit.xml" --as-of "$AS_OF"
export_ --node "$HUB" --format odm-audit --subject 101-0001 --out "$WORK/hub-audit-subj.xml" --as-of "$AS_OF"
for f in hub-audit s102-audit hub-audit-subj; do
    xmllint --nonet --noout --schema "$ODM_XSD" "$WORK/$f.xml" 2> "$WORK/xmllint.err" \
        || fail "$f.xml does not validate: $(head -5 "$WORK/xmllint.err")"
done
ok "every odm-audit export validates against ODM1-3-2.xsd (xmllint --nonet)"
export_ --node "$HUB" --format audit --audit-format ndjson --out "$WORK/audit-all.ndjson"
"$PY" - "$WORK/hub-audit.xml" "$WORK/audit-all.ndjson" <<'EOF2' || fail "odm-audit content"
import json, sys, xml.etree.ElementTree as ET
O = "{http://www.cdisc.org/ns/odm/v1.3}"
root = ET.parse(sys.argv[1]).getroot()
assert root.get("FileType") == "Transactional", root.get("FileType")
users = {e.get("OID") for e in root.iter(O + "User")}
locs = {e.get("OID") for e in root.iter(O + "Location")}
defs = {e.get("OID") for e in root.iter(O + "ItemDef")}
# The query writer (dm) writes no clinical record, so is not named.
assert {"USR.integration:coder", "USR.integration:monitor", "USR.integration:crc"} <= users and "USR.integration:dm" not in users, users
assert {"LOC.101", "LOC.102", "LOC.hub1"} <= locs, locs
for ar in root.iter(O + "AuditRecord"):
    kids = [c.tag[len(O):] for c in ar]
    assert kids[:3] == ["UserRef", "LocationRef", "DateTimeStamp"], kids
    assert kids[-1] == "SourceID", kids
    assert ar.find(O + "UserRef").get("UserOID") in users
    assert ar.find(O + "LocationRef").get("LocationOID") in locs
    assert ar.find(O + "DateTimeStamp").text.endswith("Z")
assert {e.get("LocationOID") for e in root.iter(O + "SiteRef")} <= locs
for sd in root.iter(O + "SubjectData"):
    assert sd.get("TransactionType") in ("Insert", "Update"), sd.get("TransactionType")
    assert sd.find(O + "AuditRecord") is not None, "a SubjectData without an AuditRecord"
# Every item version: one per audit-trail row of a subject, visit or AE.
rows = [json.loads(l) for l in open(sys.argv[2])]
clin = [r for r in rows if r["record_type"] in ("subject", "visit", "ae")]
items = list(root.iter(O + "ItemData"))
assert len(items) == len(clin), (len(items), len(clin))
assert all(i.find(O + "AuditRecord") is not None for i in items)
assert all(i.get("ItemOID") in defs for i in items)
hashes = {r["entry_hash"] for r in clin}
assert {i.find(O + "AuditRecord/" + O + "SourceID").text for i in items} == hashes
def versions(subject, oid):
    out = []
    for sd in root.iter(O + "SubjectData"):
        if sd.get("SubjectKey") != subject:
            continue
        for it in sd.iter(O + "ItemData"):
            if it.get("ItemOID") == oid:
                ar = it.find(O + "AuditRecord")
                rs = ar.find(O + "ReasonForChange")
                out.append((it.get("TransactionType"), it.get("Value"),
                            ar.find(O + "UserRef").get("UserOID"),
                            rs.text if rs is not None else None))
    return out
sex = versions("101-0001", "IT.DM.SEX")
assert len(sex) == 3 and sex[0][:2] == ("Insert", "F"), sex
assert {v[1:] for v in sex[1:]} == {("M", "USR.integration:crc", "site: transcription error"),
                                     ("U", "USR.integration:monitor", "monitor: source says unknown")}, sex
assert all(v[0] == "Update" for v in sex[1:]), sex
eie = versions("101-0003", "IT.DM.EIE")
assert eie == [("Remove", "Y", eie[0][2], "duplicate of 101-0002")], eie
for sd in root.iter(O + "SubjectData"):
    if sd.get("SubjectKey") == "101-0003" and sd.find(".//" + O + "ItemData[@ItemOID='IT.DM.EIE']") is not None:
        types = {e.get("TransactionType") for e in sd.iter() if e.get("TransactionType")} - {None}
        assert types == {"Update", "Remove"}, types  # the subject stays; its data is removed
coding = versions("101-0001", "IT.AE.AEDECOD")
assert coding == [("Insert", "Headache", "USR.integration:coder", None)], coding
# The valid casebook signature (101-0002, review) covers exactly the item
# versions shown now; the broken one (101-0001/V1) covers none.
signed = {}
for sd in root.iter(O + "SubjectData"):
    for it in sd.iter(O + "ItemData"):
        sg = it.find(O + "Signature")
        if sg is not None:
            assert sg.find(O + "SignatureRef").get("SignatureOID") == "SD.review"
            assert sg.find(O + "UserRef").get("UserOID") in users
            signed.setdefault(sd.get("SubjectKey"), []).append((it.get("ItemOID"), it.get("Value")))
assert set(signed) == {"101-0002"}, signed
s2 = dict(signed["101-0002"])
assert s2.get("IT.DM.DSDECOD") == "COMPLETED" and s2.get("IT.DM.STATUS") == "enrolled", s2
assert len(s2) == len(signed["101-0002"]), "an item signed in two versions"
EOF2
ok "odm-audit: every item version (one per audit row of a clinical record) with its AuditRecord"
ok "odm-audit: Insert, then Update with user and reason, Remove for entered in error; SourceIDs = entry hashes"
ok "odm-audit: the item versions a valid signature covers carry its Signature, and no others"
grep -q '101-' "$WORK/s102-audit.xml" && fail "site 102's odm-audit names a site 101 record"
ok "site 102's odm-audit holds none of site 101's records"
export_ --node "$HUB" --format odm-audit --out "$WORK/hub-audit2.xml" --as-of "$AS_OF"
assert_eq "$(sha256sum < "$WORK/hub-audit.xml")" "$(sha256sum < "$WORK/hub-audit2.xml")" \
    "two odm-audit exports with the same --as-of are byte-identical"

# ---- byte-identical ----
export_ --node "$HUB" --format odm --out "$WORK/hub2.xml" --as-of "$AS_OF"
assert_eq "$(sha256sum < "$WORK/hub.xml")" "$(sha256sum < "$WORK/hub2.xml")" \
    "two ODM exports with the same --as-of are byte-identical"
export_ --node "$HUB" --format odm --out "$WORK/hub-now1.xml"
export_ --node "$HUB" --format odm --out "$WORK/hub-now2.xml"
assert_eq "$(sha256sum < "$WORK/hub-now1.xml")" "$(sha256sum < "$WORK/hub-now2.xml")" \
    "without --as-of the file's time is the newest write's: still byte-identical"

# ---- SDTM CSV ----
export_ --node "$HUB" --format sdtm-csv --out "$WORK/csv" --as-of "$AS_OF"
export_ --node "$S2" --format sdtm-csv --out "$WORK/csv-102" --as-of "$AS_OF"
for f in dm ds sv ae queries; do [ -s "$WORK/csv/$f.csv" ] || fail "no $f.csv"; done
ok "sdtm-csv writes dm, ds, sv, ae and queries"
# Each DM/SV/AE row read back (python3 csv) against `trialsync get`.
"$PY" - "$WORK/csv" > "$WORK/csv.values" <<'EOF' || fail "reading the CSV back"
import csv, sys
d = sys.argv[1]
for dom, key in (("dm", "SUBJID"), ("sv", None), ("ae", "AESPID")):
    with open(f"{d}/{dom}.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        subj = r["USUBJID"][len(r["STUDYID"]) + 1:]
        if dom == "dm":
            rid, typ = subj, "subject"
            vals = {"sex": r["SEX"], "brthdtc": r["BRTHDTC"], "armcd": r["ARMCD"]}
        elif dom == "sv":
            rid, typ = subj + "/" + r["VISIT"], "visit"
            vals = {"svstdtc": r["SVSTDTC"], "svoccur": r["SVOCCUR"]}
        else:
            rid, typ = subj + "-AE-" + r["AESPID"], "ae"
            vals = {"aeterm": r["AETERM"], "aesev": r["AESEV"], "aeser": r["AESER"],
                    "aedecod": r["AEDECOD"], "aeptcd": r["AEPTCD"]}
        for k, v in vals.items():
            print(f"{typ}\t{rid}\t{k}\t{v}\t{r['TSCONFL']}")
EOF
rows=0
while IFS=$'\t' read -r typ rid field value confl; do
    want=$("$TRIALSYNC" get --node "$HUB" "$typ" "$rid" | jq -r ".fields.$field.value // \"\"")
    [ "$want" = "$value" ] || fail "$typ $rid $field: CSV has '$value', get shows '$want'"
    rows=$((rows + 1))
done < "$WORK/csv.values"
[ "$rows" -ge 20 ] || fail "only $rows values read back"
ok "every DM, SV and AE value read back from the CSV equals trialsync get ($rows values)"
grep -q '101-0003' "$WORK/csv/dm.csv" && fail "the entered-in-error subject is in dm.csv"
ok "the entered-in-error subject is left out of dm.csv"
assert_contains "$(grep 'T-EXP-101-0001,' "$WORK/csv/dm.csv")" ",SEX" "TSCONFL names the conflicting SEX"
assert_contains "$(cat "$WORK/csv/ae.csv")" '"Headache, ""throbbing"""' "RFC 4180 quoting of a comma and quotes"
assert_contains "$(grep 'Anaphylaxis' "$WORK/csv/ae.csv")" ",SEVERE,,Y,,Y," "the SAE's serious criteria"
assert_contains "$(cat "$WORK/csv/ds.csv")" "T-EXP-101-0002,1,COMPLETED,COMPLETED,2026-03-01" "DS from the disposition"
assert_contains "$(cat "$WORK/csv/queries.csv")" "Q-hub1-1,T-EXP-101-0001,ae,101-0001-AE-001,AESEV" "queries.csv names the target"
grep -q '101-' "$WORK"/csv-102/*.csv && fail "site 102's CSV export names a site 101 record"
ok "site 102's CSV holds none of site 101's records"

# ---- Dataset-JSON ----
export_ --node "$HUB" --format dataset-json --out "$WORK/dsj" --as-of "$AS_OF"
export_ --node "$S1" --format dataset-json --out "$WORK/dsj-101" --as-of "$AS_OF"
n=0
for f in "$WORK"/dsj/*.json "$WORK"/dsj-101/*.json; do
    "$JSONSCHEMA" -i "$f" "$DSJ_SCHEMA" > "$WORK/jsonschema.err" 2>&1 \
        || fail "$f does not validate: $(head -5 "$WORK/jsonschema.err")"
    n=$((n + 1))
done
assert_eq 10 "$n" "every Dataset-JSON file validates against dataset.schema.json (Debian's jsonschema)"
assert_eq 3 "$(jq .records "$WORK/dsj/dm.json")" "dm.json: 3 subjects (entered-in-error left out)"
assert_eq "$(jq .records "$WORK/dsj/dm.json")" "$(jq '.rows | length' "$WORK/dsj/dm.json")" "records counts the rows"
assert_eq 3 "$(jq .records "$WORK/dsj/ae.json")" "ae.json holds the 3 AEs"
grep -q '102-' "$WORK"/dsj-101/*.json && fail "site 101's Dataset-JSON names a site 102 record"
ok "site 101's Dataset-JSON holds none of site 102's records"

# ---- audit trail ----
export_ --node "$HUB" --format audit --out "$WORK/audit.csv"
export_ --node "$HUB" --format audit --audit-format ndjson --out "$WORK/audit.ndjson"
assert_eq "$(($(wc -l < "$WORK/audit.csv") - 1))" "$(wc -l < "$WORK/audit.ndjson")" "CSV and NDJSON hold the same rows"
row=$(jq -c 'select(.record_id == "101-0001" and .field == "sex" and .user == "integration:monitor")' "$WORK/audit.ndjson")
assert_eq F "$(echo "$row" | jq -r .old)" "the audit row shows the old value"
assert_eq U "$(echo "$row" | jq -r .new)" "... the new value"
assert_eq "monitor: source says unknown" "$(echo "$row" | jq -r .reason)" "... and the reason"
assert_eq 64 "$(echo "$row" | jq -r '.entry_hash | length')" "... and the entry's chain hash"
export_ --node "$S2" --format audit --audit-format ndjson --out "$WORK/audit-102.ndjson"
grep -q '101-' "$WORK/audit-102.ndjson" && fail "site 102's audit trail names a site 101 record"
ok "site 102's audit trail holds none of site 101's records"
export_ --node "$HUB" --format audit --audit-format ndjson --site 101 --out "$WORK/audit-101.ndjson"
assert_eq "101-0001-SIG-001 101-0002-SIG-001" \
    "$(jq -r 'select(.record_type == "signature" and .field == "target") | .record_id' "$WORK/audit-101.ndjson" | sort | xargs)" \
    "the audit trail (--site 101) has the signatures' rows"
assert_eq "inv101" "$(jq -r 'select(.record_type == "signature" and .field == "meaning" and .new == "review") | .user' "$WORK/audit-101.ndjson")" \
    "... with the signer"
assert_eq 2 "$(jq -r 'select(.record_type == "sdv" and .field == "target") | .record_id' "$WORK/audit-101.ndjson" | wc -l)" \
    "... and the SDV marks' rows"
export_ --node "$HUB" --format audit --audit-format ndjson --user coder --out "$WORK/audit-coder.ndjson"
assert_eq 5 "$(jq -s 'map(select(.user == "integration:coder")) | length' "$WORK/audit-coder.ndjson")" "--user keeps the coder's 5 writes"
assert_eq 5 "$(wc -l < "$WORK/audit-coder.ndjson")" "... and only them"

# ---- --as-of: the trial as it was ----
# Exported now, then more writes a whole second later; --as-of a time between
# the two (the writers' HLC time, so any node holding the entries agrees)
# gives back the first export's clinical content.
export_ --node "$HUB" --format sdtm-csv --out "$WORK/before-csv"
export_ --node "$HUB" --format records-ndjson --out "$WORK/before.ndjson"
export_ --node "$HUB" --format odm --out "$WORK/before.xml"
sleep 1.1
T_MID=$(date -u +%Y-%m-%dT%H:%M:%SZ)
sleep 1.1
put "$S1" subject 101-0004 site=101 sex=F status=screening
put "$S1" visit 101-0001/V2 svoccur=N --reason "the visit did not take place"
put "$S1" visit 101-0001/SCR svstdtc=2026-01-05 svoccur=Y status=completed
put "$S1" visit 101-0001/V3/2 svstdtc=2026-03-20 svoccur=Y status=completed
put "$S1" ae 101-0001-AE-003 aeterm=Rash aestdtc=2026-03-21 aesev=MILD aeser=N status=ongoing
put "$S2" subject 102-0001 eie=Y --reason "consent withdrawn before any procedure"
wait_until 60 "the later writes at the hub" bash -c \
    "'$TRIALSYNC' get --node '$HUB' ae 101-0001-AE-003 > /dev/null && '$TRIALSYNC' get --node '$HUB' subject 102-0001 | jq -e '.fields.eie.value == \"Y\"'"
export_ --node "$HUB" --format sdtm-csv --out "$WORK/asof-csv" --as-of "$T_MID"
export_ --node "$HUB" --format records-ndjson --out "$WORK/asof.ndjson" --as-of "$T_MID"
export_ --node "$HUB" --format odm --out "$WORK/asof.xml" --as-of "$T_MID"
export_ --node "$HUB" --format sdtm-csv --out "$WORK/after-csv"
diff -r "$WORK/before-csv" "$WORK/after-csv" > /dev/null && fail "the later writes changed no CSV"
diff -r "$WORK/before-csv" "$WORK/asof-csv" > "$WORK/asof.diff" \
    || fail "sdtm-csv --as-of $T_MID differs from the export taken then: $(head -5 "$WORK/asof.diff")"
ok "sdtm-csv --as-of a time between two sets of writes: every file equals the earlier export's"
assert_eq "$(sha256sum < "$WORK/before.ndjson")" "$(sha256sum < "$WORK/asof.ndjson")" \
    "records-ndjson --as-of: the earlier export's records, byte for byte"
xmllint --nonet --noout --schema "$ODM_XSD" "$WORK/asof.xml" 2> "$WORK/xmllint.err" \
    || fail "asof.xml does not validate: $(head -5 "$WORK/xmllint.err")"
# The clinical data of an ODM file without its signatures and annotations.
items() { sed -n '/<ClinicalData/,$p' "$1" | grep -vE 'Signature|Annotation|Comment'; }
assert_eq "$(items "$WORK/before.xml" | sha256sum)" "$(items "$WORK/asof.xml" | sha256sum)" \
    "odm --as-of: the same subjects, events, forms and item values as the earlier export (validates)"
assert_eq 2030-01-01T00:00:00Z "$(grep -o 'AsOfDateTime="[^"]*"' "$WORK/hub.xml" | cut -d'"' -f2)" "the file's AsOfDateTime is --as-of"

# VISITNUM: the number the visit code ends with, a repeat in hundredths.
"$PY" - "$WORK/after-csv/sv.csv" > "$WORK/visitnum.txt" <<'EOF' || fail "reading sv.csv"
import csv, sys
for r in csv.DictReader(open(sys.argv[1], newline="")):
    print(r["USUBJID"], r["VISIT"], r["VISITNUM"] or "-")
EOF
assert_eq "T-EXP-101-0001 SCR - T-EXP-101-0001 V1 1 T-EXP-101-0001 V2 2 T-EXP-101-0001 V3/2 3.02" \
    "$(grep 101-0001 "$WORK/visitnum.txt" | xargs)" "SV VISITNUM from the visit code (SCR: none; V3/2: 3.02)"
export_ --node "$HUB" --format dataset-json --out "$WORK/after-dsj"
assert_eq '"decimal" "3.02"' "$(jq -r '(.columns | map(.name) | index("VISITNUM")) as $i
    | "\"\(.columns[$i].dataType)\" \"\(.rows[] | select(.[$i + 1] == "V3/2") | .[$i])\""' "$WORK/after-dsj/sv.json")" \
    "Dataset-JSON: VISITNUM is a decimal column"
"$JSONSCHEMA" -i "$WORK/after-dsj/sv.json" "$DSJ_SCHEMA" > "$WORK/jsonschema.err" 2>&1 \
    || fail "sv.json with VISITNUM does not validate: $(head -5 "$WORK/jsonschema.err")"

# ---- two hubs after convergence: byte-identical exports ----
# A second hub (tests/integration/test_two_hubs.sh) catches up from hub1;
# once their digests agree, every format exported by each with one --as-of
# has the same SHA-256.
HUB2="$WORK/hub2"
"$TRIALSYNC" hub add hub2 --dir "$WORK/trial" --out "$HUB2" --peer-port "$(free_port)" \
    --api-port "$(free_port)" > "$WORK/hub-add.out" 2>&1 || fail "hub add: $(cat "$WORK/hub-add.out")"
start_node hub2 "$HUB2"
hubs_agree() {
    local d1 d2
    d1=$(digest "$HUB") && d2=$(digest "$HUB2") && [ "$d1" = "$d2" ] || return 1
    [ "$("$TRIALSYNC" status --node "$HUB" --json | jq .entries)" = \
      "$("$TRIALSYNC" status --node "$HUB2" --json | jq .entries)" ]
}
wait_until 60 "hub2 converged with hub1" hubs_agree
ok "hub2 converged with hub1 (equal digests, $("$TRIALSYNC" status --node "$HUB2" --json | jq .entries) entries)"
for h in 1 2; do
    node=$HUB; [ $h = 2 ] && node=$HUB2
    export_ --node "$node" --format odm --out "$WORK/h$h.xml" --as-of "$AS_OF"
    export_ --node "$node" --format odm-audit --out "$WORK/h$h-audit.xml" --as-of "$AS_OF"
    export_ --node "$node" --format sdtm-csv --out "$WORK/h$h-csv" --as-of "$AS_OF"
    export_ --node "$node" --format dataset-json --out "$WORK/h$h-dsj" --as-of "$AS_OF"
    export_ --node "$node" --format audit --out "$WORK/h$h-audit.csv"
    export_ --node "$node" --format odm --out "$WORK/h$h-mid.xml" --as-of "$T_MID"
    export_ --node "$node" --format sdtm-csv --out "$WORK/h$h-mid-csv" --as-of "$T_MID"
done
xmllint --nonet --noout --schema "$ODM_XSD" "$WORK/h2.xml" "$WORK/h2-audit.xml" 2> "$WORK/xmllint.err" \
    || fail "hub2's ODM does not validate: $(head -5 "$WORK/xmllint.err")"
for f in h.xml h-audit.xml h-audit.csv h-csv/dm.csv h-csv/ds.csv h-csv/sv.csv h-csv/ae.csv \
         h-csv/queries.csv h-dsj/dm.json h-dsj/ae.json h-dsj/sv.json h-dsj/queries.json \
         h-mid.xml h-mid-csv/dm.csv h-mid-csv/sv.csv h-mid-csv/ae.csv; do
    f1="$WORK/${f/h/h1}" f2="$WORK/${f/h/h2}"
    [ -s "$f1" ] || fail "no $f1"
    h1=$(sha256sum < "$f1" | cut -c1-64)
    assert_eq "$h1" "$(sha256sum < "$f2" | cut -c1-64)" "two converged hubs: ${f/h/hub} identical (sha256 ${h1:0:16})"
done
stop_node hub2

# ---- round trip: export, import into a fresh trial, export again ----
# records-ndjson writes the displayed records in the form `trialsync import`
# reads; a fresh trial of the same name (its hub may write every field,
# MedDRA coding included) imports them, and exports the same clinical content.
export_ --node "$HUB" --format records-ndjson --out "$WORK/rt1.ndjson"
assert_eq 14 "$(wc -l < "$WORK/rt1.ndjson")" "records-ndjson: 5 subjects, 5 visits, 4 AEs"
"$TRIALSYNC" init --trial T-EXP --dir "$WORK/trial2" --peer-port "$(free_port)" \
    --api-port "$(free_port)" > "$WORK/init2.out" || fail "init of the fresh trial"
FRESH="$WORK/trial2/hub"
start_node fresh "$FRESH"
for s in 101 102; do
    "$TRIALSYNC" site add $s --dir "$WORK/trial2" --out "$WORK/trial2-site-$s" \
        --api-port "$(free_port)" --name "Site $s" > "$WORK/site2-add-$s.out" 2>&1 \
        || fail "fresh trial: site add $s: $(cat "$WORK/site2-add-$s.out")"
done
"$TRIALSYNC" import --node "$FRESH" "$WORK/rt1.ndjson" --user migration > "$WORK/rt.out" \
    2> "$WORK/rt.err" || fail "import of the exported records: $(cat "$WORK/rt.err")"
assert_contains "$(cat "$WORK/rt.out")" "imported 14 rows" "the fresh trial imports the 14 records"
export_ --node "$FRESH" --format records-ndjson --out "$WORK/rt2.ndjson"
rt1=$(sha256sum < "$WORK/rt1.ndjson")
assert_eq "$rt1" "$(sha256sum < "$WORK/rt2.ndjson")" \
    "round trip: records-ndjson exported again from the fresh trial is byte-identical (${rt1:0:16})"
export_ --node "$HUB" --format sdtm-csv --out "$WORK/rt-csv1" --as-of "$AS_OF"
export_ --node "$FRESH" --format sdtm-csv --out "$WORK/rt-csv2" --as-of "$AS_OF"
# TSCONFL is dropped: the original holds two concurrent values of one SEX, the
# import the displayed one; every clinical variable must be equal.
content() {  # CSV: the file without its TSCONFL column, hashed
    "$PY" -c 'import csv, sys
rows = list(csv.reader(open(sys.argv[1], newline="")))
i = rows[0].index("TSCONFL")
w = csv.writer(sys.stdout, lineterminator="\r\n")
for r in rows: w.writerow(r[:i] + r[i + 1:])' "$1" | sha256sum | cut -c1-64
}
for d in dm ds sv ae; do
    h1=$(content "$WORK/rt-csv1/$d.csv")
    assert_eq "$h1" "$(content "$WORK/rt-csv2/$d.csv")" "round trip: $d.csv clinical content equal (sha256 ${h1:0:16})"
done
assert_eq 3 "$(($(wc -l < "$WORK/rt-csv2/dm.csv") - 1))" "round trip: the entered-in-error subjects are still left out"
stop_node fresh

# ---- stopped node: the same bytes ----
export_ --node "$HUB" --format odm --out "$WORK/hub-running.xml" --as-of "$AS_OF"
stop_node hub
export_ --node "$HUB" --format odm --out "$WORK/hub-stopped.xml" --as-of "$AS_OF"
assert_eq "$(sha256sum < "$WORK/hub-running.xml")" "$(sha256sum < "$WORK/hub-stopped.xml")" \
    "the export of the stopped hub equals the one taken while it ran"
export_ --node "$HUB" --format odm --out "$WORK/hub-stopped-mid.xml" --as-of "$T_MID"
assert_eq "$(sha256sum < "$WORK/h1-mid.xml")" "$(sha256sum < "$WORK/hub-stopped-mid.xml")" \
    "... also --as-of a past time (the roll-back)"

done_checks
