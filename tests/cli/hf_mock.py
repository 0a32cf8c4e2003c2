#!/usr/bin/env python3
"""A mock of the Hugging Face Hub's download API on loopback, for tests/cli/models_oci.sh.

    hf_mock.py ROOT LOG    (prints the port it listens on)

ROOT/ORG/REPO/ holds a repo's files. Served like the Hub:
  GET /api/models/ORG/REPO[?blobs=true]  {"id", "siblings": [{"rfilename", "size", "lfs": {"sha256", "size"}}]}
  GET|HEAD /ORG/REPO/resolve/main/FILE   302 to /cdn/ORG/REPO/FILE with X-Linked-ETag (the sha256) and X-Linked-Size
  GET /cdn/ORG/REPO/FILE                 the bytes, honouring Range
A file ROOT/ORG/REPO/.lie makes the listing give a wrong sha256 for every file, .etag-lie the
X-Linked-ETag header. Every request is logged to LOG as "METHOD PATH RANGE".
"""
import hashlib, http.server, json, os, sys, urllib.parse

root, log_path = sys.argv[1], sys.argv[2]


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def repo_dir(org, repo):
    d = os.path.join(root, org, repo)
    if ".." in (org, repo) or not os.path.isdir(d):
        return None
    return d


class Hub(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, status, body=b"", ctype="application/json", headers=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        with open(log_path, "a") as log:
            log.write(f"{self.command} {self.path} {self.headers.get('Range', '-')}\n")
        path = urllib.parse.urlsplit(self.path).path
        parts = [urllib.parse.unquote(p) for p in path.strip("/").split("/")]
        if len(parts) == 4 and parts[:2] == ["api", "models"]:
            d = repo_dir(parts[2], parts[3])
            if not d:
                return self.reply(404, b'{"error":"Repository not found"}')
            lie = os.path.exists(os.path.join(d, ".lie"))
            siblings = []
            for name in sorted(os.listdir(d)):
                if name.startswith("."):
                    continue
                p = os.path.join(d, name)
                size = os.path.getsize(p)
                entry = {"rfilename": name, "size": size}
                if name.endswith(".gguf"):
                    sha = sha256_of(p)
                    if lie:
                        sha = sha[:-1] + ("0" if sha[-1] != "0" else "1")
                    entry["lfs"] = {"sha256": sha, "size": size, "pointerSize": 134}
                siblings.append(entry)
            body = json.dumps({"id": f"{parts[2]}/{parts[3]}", "siblings": siblings}).encode()
            return self.reply(200, body)
        if len(parts) == 5 and parts[2:4] == ["resolve", "main"]:
            d = repo_dir(parts[0], parts[1])
            f = os.path.join(d, parts[4]) if d else None
            if not f or "/" in parts[4] or not os.path.isfile(f):
                return self.reply(404, b'{"error":"Entry not found"}')
            loc = "/cdn/" + "/".join(urllib.parse.quote(p) for p in (parts[0], parts[1], parts[4]))
            etag = sha256_of(f)
            if os.path.exists(os.path.join(d, ".etag-lie")):
                etag = etag[:-1] + ("0" if etag[-1] != "0" else "1")
            return self.reply(302, b"", "text/plain", [("Location", loc), ("X-Linked-ETag", f'"{etag}"'),
                                                       ("X-Linked-Size", str(os.path.getsize(f)))])
        if len(parts) == 4 and parts[0] == "cdn":
            d = repo_dir(parts[1], parts[2])
            f = os.path.join(d, parts[3]) if d else None
            if not f or not os.path.isfile(f):
                return self.reply(404, b"not found", "text/plain")
            data = open(f, "rb").read()
            rng = self.headers.get("Range")
            if rng:
                start = int(rng.split("=")[1].split("-")[0])
                if start >= len(data):
                    return self.reply(416, b"", "text/plain", [("Content-Range", f"bytes */{len(data)}")])
                return self.reply(206, data[start:], "application/octet-stream",
                                  [("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")])
            return self.reply(200, data, "application/octet-stream")
        return self.reply(404, b'{"error":"not found"}')

    do_GET = do_HEAD = handle_any


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hub)
print(server.server_address[1], flush=True)
server.serve_forever()
