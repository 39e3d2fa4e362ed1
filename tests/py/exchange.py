#!/usr/bin/env python3
"""The ecosystem's own tools against certfed's STIX, MISP and TAXII output.

Driven by tests/it/exchange.rs (one subcommand per check). Each subcommand
prints what it found and exits 0 when the check passes, 1 when it fails (the
reason on stderr), so the Rust test can show it.

    exchange.py tools                       # the tools import (exit 3 if not)
    exchange.py stix-validate FILE          # stix2-validator + stix2.parse
    exchange.py stix-make FILE              # a bundle written with the stix2 library
    exchange.py stix-compare ORIG EXPORTED  # supported fields kept
    exchange.py misp-make FILE              # an event written with PyMISP
    exchange.py misp-check FILE             # PyMISP load + misp-stix conversion (validated)
    exchange.py misp-compare ORIG EXPORTED  # attributes and tags kept
    exchange.py misp-feed DIR               # manifest and hashes.csv as PyMISP computes them
    exchange.py misp-evidence FILE          # attachments/malware samples as PyMISP reads them
    exchange.py misp-make-evidence FILE PCAP SAMPLE  # an event with both, zipped as MISP does
    exchange.py stix-evidence FILE          # file/artifact content, malware sample_refs (stix2)
    exchange.py taxii URL CA CERT KEY       # taxii2-client: discovery, collections, paging
    exchange.py taxii-refused URL CA [CERT KEY]  # the server refuses this client
"""
import json
import sys

# stix2-validator warnings that are expected of certfed's output, with why:
#  103: "ID is not a UUIDv4": certfed ids are UUIDv5 of the message id on
#       purpose (STIX 2.1 allows any RFC 4122 UUID; v4 is a SHOULD), so that
#       a re-export updates rather than duplicates.
#  302: "external reference has a URL but no hash": a reference is a link an
#       analyst gave; certfed does not fetch it to hash it.
#  303: "indicator SHOULD have name and description": the description is the
#       analyst's comment, present when one was written; inventing one would
#       not survive a round trip.
ALLOWED_WARNINGS = {"103", "302", "303"}


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def tools():
    try:
        import stix2  # noqa: F401
        import stix2validator  # noqa: F401
        import taxii2client.v21  # noqa: F401
        import pymisp  # noqa: F401
        import misp_stix_converter  # noqa: F401
    except ImportError as e:
        print(f"missing: {e}", file=sys.stderr)
        sys.exit(3)
    print("ok")


def validate_text(text, what, warnings_are_ours=True):
    import stix2
    import stix2validator

    opts = stix2validator.ValidationOptions(strict=False)
    results = stix2validator.validate_string(text, opts)
    if not results.is_valid:
        stix2validator.print_results(results)
        fail(f"{what}: stix2-validator says invalid")
    warnings = []
    for w in results.warnings if warnings_are_ours else []:
        code = str(w).split("{", 1)[-1].split("}", 1)[0]
        if code not in ALLOWED_WARNINGS:
            warnings.append(str(w))
    if warnings:
        fail(f"{what}: unexpected validator warnings:\n" + "\n".join(warnings))
    # certfed writes no custom objects or properties; misp-stix does (x-misp-*).
    bundle = stix2.parse(text, allow_custom=not warnings_are_ours)
    return bundle


def stix_validate(path):
    with open(path) as f:
        text = f.read()
    bundle = validate_text(text, path)
    types = sorted({o.type for o in bundle.objects})
    print(json.dumps({"objects": len(bundle.objects), "types": types}))


TLP_GREEN = {
    "type": "marking-definition", "spec_version": "2.1",
    "id": "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
    "created": "2022-10-01T00:00:00.000Z", "name": "TLP:GREEN",
    "extensions": {"extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d": {
        "extension_type": "property-extension", "tlp_2_0": "green"}},
}


def stix_make(path):
    """A bundle as another tool would write it, with the OASIS stix2 library."""
    import stix2

    green = stix2.parse(TLP_GREEN)
    org = stix2.Identity(name="CERT-Example", identity_class="organization")
    common = dict(created_by_ref=org, object_marking_refs=[green])
    inds = [
        stix2.Indicator(name="c2", description="C2 server", pattern="[ipv4-addr:value = '192.0.2.77']",
                        pattern_type="stix", valid_from="2025-01-01T00:00:00Z", **common),
        stix2.Indicator(name="net", pattern="[ipv6-addr:value = '2001:db8::/32']",
                        pattern_type="stix", valid_from="2025-01-01T00:00:00Z", **common),
        stix2.Indicator(name="dom", pattern="[domain-name:value = 'evil.example' OR url:value = 'https://evil.example/x.php?id=1']",
                        pattern_type="stix", valid_from="2025-01-01T00:00:00Z", **common),
        stix2.Indicator(name="hash", description="dropper", pattern="[file:hashes.'SHA-256' = '" + "a1" * 32 + "']",
                        pattern_type="stix", valid_from="2025-01-01T00:00:00Z", **common),
        stix2.Indicator(name="mail", pattern="[email-addr:value = 'phish@evil.example']",
                        pattern_type="stix", valid_from="2025-01-01T00:00:00Z", **common),
        stix2.Indicator(name="as", pattern="[autonomous-system:number = 64496]",
                        pattern_type="stix", valid_from="2025-01-01T00:00:00Z", **common),
    ]
    vuln = stix2.Vulnerability(name="CVE-2024-3400", description="exploited for entry",
                               external_references=[{"source_name": "cve", "external_id": "CVE-2024-3400"}], **common)
    loc = stix2.Location(country="UA", name="Ukraine")
    report = stix2.Report(
        name="Phishing wave against energy operators",
        description="Spear-phishing with a dropper.\nSecond line.",
        published="2025-01-02T00:00:00Z", report_types=["threat-report"],
        object_refs=[i.id for i in inds] + [vuln.id, loc.id],
        labels=["rsit:fraud=\"phishing\"", "nis2:impact-sectors-impacted=\"energy\"",
                "nis2:impact-subsectors-impacted=\"electricity\"", "certfed:severity=\"high\""],
        external_references=[{"source_name": "reference", "url": "https://cert.example/adv/1"}],
        **common,
    )
    note = stix2.Note(content="Seen together with invoice-themed lures", abstract="analyst note",
                      object_refs=[report.id], **common)
    bundle = stix2.Bundle(org, green, *inds, vuln, loc, report, note)
    with open(path, "w") as f:
        f.write(bundle.serialize(pretty=True))
    print(json.dumps({"report": report.id}))


def report_view(bundle):
    """What certfed carries of a bundle's one report, comparable across tools."""
    objs = {o["id"]: o for o in bundle["objects"]}
    reports = [o for o in bundle["objects"] if o["type"] == "report"]
    if len(reports) != 1:
        fail(f"expected one report, found {len(reports)}")
    r = reports[0]
    patterns, vulns, countries = set(), set(), set()
    for ref in r["object_refs"]:
        o = objs.get(ref)
        if o is None:
            continue
        if o["type"] == "indicator":
            # One comparison per pattern in certfed's output; split ORs of the input.
            for part in o["pattern"].strip("[]").replace("] OR [", " OR ").split(" OR "):
                patterns.add((part.strip(), o.get("description", "")))
        elif o["type"] == "vulnerability":
            vulns.add((o["name"], o.get("description", "")))
        elif o["type"] == "location":
            countries.add(o["country"])
    notes = {(o["content"], o.get("abstract", "")) for o in bundle["objects"]
             if o["type"] == "note" and r["id"] in o.get("object_refs", [])}
    refs = {e.get("url") or e.get("external_id") for e in r.get("external_references", [])
            if e.get("source_name") != "certfed"}
    return {
        "name": r["name"], "description": r.get("description", ""),
        "labels": sorted(r.get("labels", [])), "patterns": sorted(patterns),
        "vulnerabilities": sorted(vulns), "countries": sorted(countries),
        "notes": sorted(notes), "references": sorted(refs),
    }


def stix_compare(orig, exported):
    with open(orig) as f:
        a = json.load(f)
    with open(exported) as f:
        text = f.read()
    validate_text(text, exported)
    b = json.loads(text)
    va, vb = report_view(a), report_view(b)
    # ' OR '-joined comparisons of the input become one indicator each.
    pa = sorted({p for p, _ in va["patterns"]})
    pb = sorted({p for p, _ in vb["patterns"]})
    va["patterns"], vb["patterns"] = pa, pb
    if va != vb:
        fail("round trip changed supported fields:\n" + json.dumps({"original": va, "exported": vb}, indent=1))
    print(json.dumps(vb))


def misp_make(path):
    """An event as a MISP instance would export it, written with PyMISP."""
    from pymisp import MISPEvent, MISPOrganisation

    e = MISPEvent()
    e.info = "Ransomware staging servers"
    e.threat_level_id = 1
    e.analysis = 2
    e.distribution = 1
    org = MISPOrganisation()
    org.name = "CERT-Other"
    org.uuid = "5c1e2a00-0000-4000-8000-00000000beef"
    e.Orgc = org
    for t in ["tlp:green", "rsit:malicious-code=\"c2-server\"", "nis2:impact-sectors-impacted=\"health\""]:
        e.add_tag(t)
    e.add_attribute("ip-dst", "203.0.113.10", comment="staging")
    e.add_attribute("domain", "stage.evil.example")
    e.add_attribute("url", "http://stage.evil.example/a.bin")
    e.add_attribute("sha256", "b2" * 32)
    e.add_attribute("md5", "c3" * 16)
    e.add_attribute("vulnerability", "CVE-2023-4966")
    e.add_attribute("email", "ops@evil.example")
    e.add_attribute("AS", "AS64511")
    e.add_attribute("text", "operators active at night")
    e.add_attribute("link", "https://other.example/report")
    with open(path, "w") as f:
        f.write(e.to_json(indent=1))
    print(json.dumps({"uuid": e.uuid}))


def load_events(path):
    from pymisp import MISPEvent

    with open(path) as f:
        data = json.load(f)
    items = data["response"] if isinstance(data, dict) and "response" in data else [data]
    events = []
    for item in items:
        ev = MISPEvent()
        ev.load(item)
        events.append(ev)
    return events


def misp_check(path):
    from misp_stix_converter import MISPtoSTIX21Parser

    events = load_events(path)
    out = []
    for ev in events:
        if not ev.info or not ev.Orgc.name:
            fail(f"{path}: event without info or Orgc")
        parser = MISPtoSTIX21Parser()
        parser.parse_misp_event(ev.to_dict())
        bundle = parser.bundle
        # misp-stix's own output: its warnings are misp-stix's, errors would be ours.
        validate_text(bundle.serialize(), f"misp-stix conversion of {ev.uuid}", warnings_are_ours=False)
        out.append({"uuid": ev.uuid, "attributes": len(ev.attributes), "tags": [t.name for t in ev.tags],
                    "stix_types": sorted({o.type for o in bundle.objects})})
    print(json.dumps(out))


def event_view(ev):
    return {
        "info": ev.info,
        "attributes": sorted((a.type, str(a.value), getattr(a, "comment", "") or "") for a in ev.attributes),
        "tags": sorted(t.name for t in ev.tags),
    }


def misp_compare(orig, exported):
    a = load_events(orig)[0]
    b = load_events(exported)[0]
    va, vb = event_view(a), event_view(b)
    # certfed adds the tags of what it carries beyond MISP's fields.
    vb["tags"] = [t for t in vb["tags"] if not t.startswith("certfed:")]
    if va != vb:
        fail("round trip changed attributes or tags:\n" + json.dumps({"original": va, "exported": vb}, indent=1))
    print(json.dumps(vb))


def misp_feed(d):
    import os
    from pymisp import MISPEvent

    with open(os.path.join(d, "manifest.json")) as f:
        manifest = json.load(f)
    with open(os.path.join(d, "hashes.csv")) as f:
        lines = sorted(l.strip() for l in f if l.strip())
    expect_lines = []
    for uuid, entry in manifest.items():
        ev = MISPEvent()
        ev.load_file(os.path.join(d, f"{uuid}.json"))
        if ev.uuid != uuid:
            fail(f"{uuid}.json holds event {ev.uuid}")
        m = ev.manifest[uuid]
        for k in ["info", "date", "analysis", "threat_level_id", "timestamp"]:
            if str(m[k]) != str(entry[k]):
                fail(f"manifest {uuid} {k}: {entry[k]!r}, PyMISP computes {m[k]!r}")
        if m["Orgc"]["name"] != entry["Orgc"]["name"] or m["Orgc"]["uuid"] != entry["Orgc"]["uuid"]:
            fail(f"manifest {uuid} Orgc differs")
        if sorted(t["name"] for t in m["Tag"]) != sorted(t["name"] for t in entry["Tag"]):
            fail(f"manifest {uuid} tags differ")
        expect_lines += [f"{h},{uuid}" for h in ev.attributes_hashes("md5")]
    if sorted(expect_lines) != lines:
        fail("hashes.csv differs from PyMISP's attributes_hashes('md5')")
    print(json.dumps({"events": sorted(manifest), "hashes": len(lines)}))


def sha256(b):
    import hashlib
    return hashlib.sha256(b).hexdigest()


def misp_evidence(path):
    """Each attachment and malware sample of the first event, as PyMISP reads
    them: name -> SHA-256 of the content (a sample out of its zip)."""
    ev = load_events(path)[0]
    out = {"attachment": {}, "malware-sample": {}, "described": []}
    for a in ev.attributes:
        if a.type == "attachment":
            out["attachment"][a.value] = sha256(a.data.getvalue())
        elif a.type == "malware-sample":
            # PyMISP accepts it as a MISP sample only if the zip has MISP's shape.
            if not hasattr(a, "malware_filename"):
                fail(f"{a.uuid}: PyMISP does not read the data as a MISP malware-sample zip")
            name, md5 = a.value.rsplit("|", 1)
            binary = a.malware_binary.getvalue()
            import hashlib
            if hashlib.md5(binary).hexdigest() != md5 or a.malware_filename != name:
                fail(f"{a.uuid}: value {a.value} does not match the zip ({a.malware_filename})")
            out["malware-sample"][name] = sha256(binary)
        elif a.type == "filename|sha256":
            out["described"].append(a.value)
    print(json.dumps(out))


def misp_make_evidence(path, pcap, sample):
    """An event as a MISP instance shares it: an attachment, and a malware
    sample zipped with the password "infected" (Info-ZIP, entries <md5> and
    <md5>.filename.txt)."""
    import hashlib
    import os
    import subprocess
    import tempfile
    from io import BytesIO
    from pymisp import MISPEvent

    e = MISPEvent()
    e.info = "Evidence shared from MISP"
    e.distribution = 1
    e.threat_level_id = 2
    e.analysis = 0
    e.add_tag("tlp:green")
    with open(pcap, "rb") as f:
        e.add_attribute("attachment", os.path.basename(pcap), data=BytesIO(f.read()))
    with open(sample, "rb") as f:
        s = f.read()
    md5 = hashlib.md5(s).hexdigest()
    name = os.path.basename(sample)
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, md5), "wb") as f:
            f.write(s)
        with open(os.path.join(d, md5 + ".filename.txt"), "w") as f:
            f.write(name)
        z = os.path.join(d, "sample.zip")
        subprocess.run(["zip", "-q", "-j", "-P", "infected", z, os.path.join(d, md5),
                        os.path.join(d, md5 + ".filename.txt")], check=True)
        with open(z, "rb") as f:
            zipped = f.read()
    a = e.add_attribute("malware-sample", f"{name}|{md5}", data=BytesIO(zipped))
    if a.malware_binary.getvalue() != s:
        fail("PyMISP does not read back the sample zipped as MISP does")
    with open(path, "w") as f:
        f.write(e.to_json(indent=1))
    print(json.dumps({"uuid": e.uuid, "md5": md5}))


def stix_evidence(path):
    """Attachments of a bundle as the stix2 library reads them: each file with
    content (its artifact's payload_bin, out of a MISP-style zip when
    encrypted) -> SHA-256, checked against the file's hashes; and the names
    of the samples malware objects refer to."""
    import base64
    import io
    import zipfile
    import stix2

    with open(path) as f:
        bundle = stix2.parse(f.read())
    objs = {o.id: o for o in bundle.objects}
    out = {"files": {}, "samples": [], "described": []}
    for o in bundle.objects:
        if o.type == "file" and "content_ref" in o:
            art = objs[o.content_ref]
            raw = base64.b64decode(art.payload_bin)
            if art.get("encryption_algorithm") == "mime-type-indicated":
                if art.mime_type != "application/zip":
                    fail(f"{art.id}: encrypted but not a zip")
                with zipfile.ZipFile(io.BytesIO(raw)) as z:
                    names = [n for n in z.namelist() if not n.endswith(".filename.txt")]
                    raw = z.read(names[0], pwd=art.decryption_key.encode())
            if o.hashes.get("SHA-256") != sha256(raw):
                fail(f"{o.id}: hashes.SHA-256 does not match the content")
            out["files"][o.name] = sha256(raw)
        elif o.type == "file":
            out["described"].append(o.name)
        elif o.type == "malware":
            for r in o.get("sample_refs", []):
                out["samples"].append(objs[r].name)
    print(json.dumps(out))


def taxii(url, ca, cert, key):
    from taxii2client.v21 import Server, as_pages

    server = Server(url, verify=ca, cert=(cert, key))
    roots = server.api_roots
    if not roots:
        fail("no API roots")
    root = server.default or roots[0]
    result = {"title": server.title, "versions": root.versions, "collections": {}}
    for c in root.collections:
        pages, ids, firsts, objects = 0, [], [], []
        for env in as_pages(c.get_objects, per_request=3):
            pages += 1
            objects += env.get("objects", [])
            ids += [o["id"] for o in env.get("objects", [])]
        if objects:
            # What a collection serves is valid STIX 2.1, as a bundle.
            bundle = {"type": "bundle", "id": "bundle--6f0f3e0c-1b1e-4c57-9d38-9a2b4d5e6f70", "objects": objects}
            validate_text(json.dumps(bundle), f"collection {c.title}")
        manifest = c.get_manifest()
        added = [m["date_added"] for m in manifest.get("objects", [])]
        after = None
        if len(added) > 2:
            after = c.get_objects(added_after=added[1])
            firsts = [o["id"] for o in after.get("objects", [])]
        reports = c.get_objects(type="report").get("objects", [])
        one = c.get_object(ids[0]) if ids else {}
        result["collections"][c.title] = {
            "id": c.id, "can_read": c.can_read, "can_write": c.can_write,
            "pages": pages, "ids": ids, "unique": len(set(ids)),
            "added_after_count": len(firsts), "manifest": len(added),
            "reports": len(reports),
            "get_object": [o["id"] for o in one.get("objects", [])],
        }
    print(json.dumps(result))


def taxii_refused(url, ca, cert=None, key=None):
    import requests
    from taxii2client.v21 import Server

    try:
        server = Server(url, verify=ca, cert=(cert, key) if cert else None)
        server.refresh()
    except requests.exceptions.HTTPError as e:
        print(json.dumps({"refused": "http", "status": e.response.status_code,
                          "content_type": e.response.headers.get("Content-Type"),
                          "body": e.response.text}))
        return
    except (requests.exceptions.SSLError, requests.exceptions.ConnectionError) as e:
        print(json.dumps({"refused": "tls", "error": str(e)[:300]}))
        return
    fail(f"the server answered: {server.title}")


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {
        "tools": tools, "stix-validate": stix_validate, "stix-make": stix_make,
        "stix-compare": stix_compare, "misp-make": misp_make, "misp-check": misp_check,
        "misp-compare": misp_compare, "misp-feed": misp_feed, "taxii": taxii,
        "misp-evidence": misp_evidence, "misp-make-evidence": misp_make_evidence,
        "stix-evidence": stix_evidence,
        "taxii-refused": taxii_refused,
    }[cmd](*args)
