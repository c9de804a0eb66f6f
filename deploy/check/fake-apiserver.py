#!/usr/bin/env python3
"""A stand-in for a Kubernetes API server's discovery endpoints, so that
`kubectl apply --dry-run=client --validate=false` can map the kinds of
deploy/ (ConfigMap, Secret, Job, Tekton Task) without a cluster. Every object
GET is 404 (nothing exists yet), so kubectl takes the create path. Prints
its port on stdout; serves until killed. Python standard library only."""
import json, sys, http.server
RES = {
    "/api/v1": [("configmaps","ConfigMap",True),("secrets","Secret",True),("pods","Pod",True)],
    "/apis/batch/v1": [("jobs","Job",True)],
    "/apis/tekton.dev/v1beta1": [("tasks","Task",True)],
    "/apis/tekton.dev/v1": [("tasks","Task",True)],
}
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): sys.stderr.write("%s\n" % self.path)
    def send(self, code, obj):
        b = json.dumps(obj).encode()
        self.send_response(code); self.send_header("Content-Type","application/json")
        self.send_header("Content-Length", str(len(b))); self.end_headers(); self.wfile.write(b)
    def do_GET(self):
        p = self.path.split("?")[0]
        if p == "/api":
            return self.send(200, {"kind":"APIVersions","versions":["v1"]})
        if p == "/apis":
            groups = {}
            for k in RES:
                if k.startswith("/apis/"):
                    g, v = k[6:].split("/")
                    groups.setdefault(g, []).append(v)
            return self.send(200, {"kind":"APIGroupList","apiVersion":"v1","groups":[
                {"name":g,"versions":[{"groupVersion":f"{g}/{v}","version":v} for v in vs],
                 "preferredVersion":{"groupVersion":f"{g}/{vs[0]}","version":vs[0]}} for g,vs in groups.items()]})
        if p in RES:
            gv = p[5:] if p.startswith("/api/") else p[6:]
            return self.send(200, {"kind":"APIResourceList","groupVersion":gv,"resources":[
                {"name":n,"singularName":"","namespaced":ns,"kind":k,"verbs":["create","get","list","patch","update","delete"]} for n,k,ns in RES[p]]})
        return self.send(404, {"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"not found"})
s = http.server.HTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
