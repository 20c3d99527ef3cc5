#!/usr/bin/env python3
"""Instruction counts per request, by callgrind: the gateway's hottest paths, and the app's own.

    python3 bench/callgrind.py                      # every scenario, 300 requests each
    python3 bench/callgrind.py get patch -n 500     # some scenarios
    python3 bench/callgrind.py get --top 40         # more functions in the listing

It starts the demo app and `scimbridge serve` (release build) both under valgrind's callgrind
with instrumentation off, preloads users as bench/run.py does, sends a few warm-up requests, then
for each scenario switches instrumentation on, sends N requests one after another on one
keep-alive connection, and dumps. Instructions are counted, not timed: the figures repeat
whatever else the machine is doing, which makes them the right yardstick for a change on a
busy 2-core machine. It prints, per scenario, instructions per request of the gateway and of
the app (through the gateway and called directly) and the gateway's top functions (inclusive).
The raw callgrind files stay in bench/results/callgrind/ for `callgrind_annotate`.
"""

import argparse
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (the benchmark's setup: config, preload, adoption)

OUT = bench.ROOT / "bench" / "results" / "callgrind"


class Grinded(bench.Proc):
    """A release binary under callgrind, instrumentation off until asked."""

    def __init__(self, name, args, env, ready_prefix):
        self.name = name
        wrapper = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={OUT / name}.%p"]
        super().__init__(args, env, ready_prefix, wrapper=wrapper, timeout=120)

    def control(self, *args):
        subprocess.run(["callgrind_control", *args, str(self.p.pid)], check=True, capture_output=True)

    def dump(self, label):
        """Dumps the counts since the last zeroing; returns the dump's file."""
        self.control("-d", label)
        files = sorted(OUT.glob(f"{self.name}.{self.p.pid}.*"), key=lambda f: f.stat().st_mtime)
        return files[-1]

    def stop(self):
        # valgrind writes its last dump on the way out: give it time.
        self.p.terminate()
        try:
            self.p.wait(60)
        except subprocess.TimeoutExpired:
            self.p.kill()


def total(dump):
    for line in dump.read_text().splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    return 0


def annotate(dump, top):
    """The gateway's own functions by inclusive cost (the async plumbing around them says little)."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=99", str(dump)],
                         capture_output=True, text=True).stdout
    rows, seen = [], set()
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+)\s+\(\s*([\d.]+)%\)\s+(\S+)", line)
        if not m or "scimbridge::" not in m.group(3) or "listener::serve" in m.group(3):
            continue
        name = short(m.group(3))
        if name not in seen:
            seen.add(name)
            rows.append((int(m.group(1).replace(",", "")), m.group(2), m.group(3)))
    return rows[:top]


def short(symbol):
    symbol = re.sub(r"^[^:]*\.rs:", "", symbol).strip()
    symbol = re.sub(r"::h[0-9a-f]{16}$", "", symbol)
    symbol = re.sub(r" \[[^\]]*\]$", "", symbol)
    return symbol if len(symbol) < 140 else symbol[:137] + "..."


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("scenarios", nargs="*", default=["get", "lookup", "create", "patch", "member", "page"])
    ap.add_argument("-n", type=int, default=300, help="requests per scenario")
    ap.add_argument("--users", type=int, default=2000)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--otlp", action="store_true", help="the gateway exports traces and metrics to a local OTLP sink")
    a = ap.parse_args()
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "scimbridge"], cwd=bench.ROOT, check=True)
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="scimbridge-profile-"))
    procs = []
    try:
        app = Grinded("app", ["demo-app", "--listen", "127.0.0.1:0"], {"DEMO_APP_API_KEY": bench.API_KEY},
                      "demo-app listening on ")
        procs.append(app)
        bench.write_config(tmp / "config", 1)
        env = {"DEMO_APP_URL": app.url, "DEMO_APP_API_KEY": bench.API_KEY, "RUST_LOG": "warn"}
        if a.otlp:
            sink = bench.Proc([], {}, "otlp-sink listening on ",
                              program=bench.sink_program(False))
            procs.append(sink)
            env.update(OTEL_EXPORTER_OTLP_ENDPOINT=sink.url, OTEL_METRIC_EXPORT_INTERVAL="5000")
        gw = Grinded("gateway", ["serve", "--config", str(tmp / "config"), "--listen", "127.0.0.1:0",
                                 "--data-dir", str(tmp / "data")], env, "scimbridge listening on ")
        procs.append(gw)
        groups = ["profile-direct", "profile-gateway"]
        logins, teams = bench.preload(app.url, a.users, groups)
        ids, gids = bench.adopt(gw.url, a.users, groups)
        names = [f"user{i}@example.com" for i in range(a.users)]
        spare = names[1000:] if a.users > 1000 else names
        direct = bench.Client(app.url, {"X-Api-Key": bench.API_KEY})
        scim = bench.Client(gw.url + "/bench/scim/v2", {"Authorization": f"Bearer {bench.TOKEN}"})
        scim.headers["Content-Type"] = "application/scim+json"

        def plan(name, i):
            """(direct (method, path, body), gateway (method, path, body)) of request i."""
            n = names[(i * 7919) % len(names)]
            if name == "get":
                return ("GET", f"/api/v1/accounts/{logins[n]}", None), ("GET", f"/Users/{ids[n]}", None)
            if name == "lookup":
                q = bench.urllib.parse.quote
                expr = q('userName eq "%s"' % n)
                return (("GET", f"/api/v1/accounts?login={q(n)}", None), ("GET", f"/Users?filter={expr}", None))
            if name == "create":
                u = f"profile-{i}@example.com"
                return (("POST", "/api/v1/accounts", {"account": {"login": "d" + u, "first_name": "P", "last_name": "U",
                                                                  "ext_ref": "d" + u}}),
                        ("POST", "/Users", {"schemas": [bench.USER], "userName": u, "externalId": u,
                                            "name": {"givenName": "P", "familyName": "U"}, "active": True}))
            if name == "patch":
                return (("PUT", f"/api/v1/accounts/{logins[n]}", {"account": {"login": n, "first_name": "Bench",
                                                                               "last_name": "User", "display": f"R{i}",
                                                                               "status": "active"}}),
                        ("PATCH", f"/Users/{ids[n]}", {"schemas": [bench.PATCH], "Operations": [
                            {"op": "replace", "path": "displayName", "value": f"R{i}"}]}))
            if name == "member":
                m = spare[i % len(spare)]
                return (("POST", f"/api/v1/teams/{teams['profile-direct']}/members", {"account_id": logins[m]}),
                        ("PATCH", f"/Groups/{gids['profile-gateway']}", {"schemas": [bench.PATCH], "Operations": [
                            {"op": "add", "path": "members", "value": [{"value": ids[m]}]}]}))
            if name == "page":
                last = max(1, len(names) - 99)
                return (("GET", f"/api/v1/accounts?offset={last - 1}&limit=100", None),
                        ("GET", f"/Users?startIndex={last}&count=100", None))
            raise SystemExit(f"unknown scenario {name}")

        # Warm-up: every path once, connections opened, lazy statics initialised.
        for name in a.scenarios:
            for i in range(a.n, a.n + 20):
                d, g = plan(name, i)
                direct.call(*d)
                scim.call(*g)

        results = []
        for name in a.scenarios:
            app.control("-z")
            gw.control("-z")
            app.control("-i", "on")
            gw.control("-i", "on")
            for i in range(a.n):
                scim.call(*plan(name, i)[1])
            gw.control("-i", "off")
            app.control("-i", "off")
            gw_dump, via_dump = gw.dump(f"{name}-gateway"), app.dump(f"{name}-via")
            app.control("-z")
            app.control("-i", "on")
            for i in range(a.n):
                # The same kind of request, fresh names where a create must not collide.
                d = plan(name, i + 10 * a.n)[0] if name in ("create", "member") else plan(name, i)[0]
                direct.call(*d)
            app.control("-i", "off")
            app_dump = app.dump(f"{name}-direct")
            row = {"scenario": name, "n": a.n, "gateway": total(gw_dump) / a.n, "app_via": total(via_dump) / a.n,
                   "app_direct": total(app_dump) / a.n, "dump": str(gw_dump)}
            results.append(row)
            print(f"\n== {name}: gateway {row['gateway']:,.0f} instructions/request, app {row['app_direct']:,.0f} "
                  f"direct ({row['app_via']:,.0f} through the gateway); gateway ÷ app "
                  f"{row['gateway'] / max(row['app_direct'], 1):.1f}×", flush=True)
            for ir, pct, sym in annotate(gw_dump, a.top):
                print(f"  {ir / a.n:>12,.0f}  {pct:>5}%  {short(sym)}")
        (OUT / "summary.json").write_text(json.dumps(results, indent=1) + "\n")
        print("\n| scenario | gateway Ir/request | app Ir/request (direct) | gateway ÷ app |")
        print("| --- | --- | --- | --- |")
        for r in results:
            print(f"| {r['scenario']} | {r['gateway']:,.0f} | {r['app_direct']:,.0f} | "
                  f"{r['gateway'] / max(r['app_direct'], 1):.1f} |")
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
