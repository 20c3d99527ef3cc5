#!/usr/bin/env python3
"""The scimbridge benchmark: the demo app straight, and the demo app through the gateway, side by
side in one run, on loopback.

    python3 bench/run.py                 # release build, 10,000 users, 10 s per run, c=16 and c=64
    python3 bench/run.py --smoke         # a few seconds in all: that the harness works (CI)
    python3 bench/run.py --telemetry     # also OTLP export on vs off, to show what it costs
                                         # (two gateways side by side, taking turns in bursts)

Each scenario runs with wrk (Debian's package; installed if missing) against the demo app's own
API ("direct") and against the gateway's SCIM API ("gateway"). For each run it reads, from /proc,
the CPU time each process spent and its peak resident memory, and prints one table: requests/s,
p50/p99 latency, CPU time per request of each process, peak RSS, errors, and the gateway/direct
ratios. The table and the raw numbers also go to bench/results/. Nothing here asserts anything:
the numbers are for people (and bench/README.md).
"""

import argparse
import concurrent.futures
import hashlib
import http.client
import json
import os
import pathlib
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
BIN = TARGET / "release" / "scimbridge"
LUA = ROOT / "bench" / "scenario.lua"
TOKEN = "bench-token"
API_KEY = "bench-api-key"
TICK = os.sysconf("SC_CLK_TCK")
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCIM_HEADERS = [f"Authorization: Bearer {TOKEN}", "Content-Type: application/scim+json"]


class Proc:
    """A child process started from the release binary, stopped at exit."""

    def __init__(self, args, env, ready_prefix, wrapper=(), timeout=30, program=None, log=None):
        """`wrapper` runs the binary under another program (callgrind.py: valgrind); `program`
        replaces the binary (the OTLP sink); `log` is a file for its stderr."""
        program = program or [str(BIN)]
        err = open(log, "w") if log else subprocess.DEVNULL
        self.p = subprocess.Popen([*wrapper, *program, *args], env={**os.environ, **env}, stdout=subprocess.PIPE,
                                  stderr=err, text=True)
        self.url = None
        deadline = time.time() + timeout
        for line in self.p.stdout:
            if line.startswith(ready_prefix):
                self.url = line[len(ready_prefix):].strip()
                break
            if time.time() > deadline:
                break
        if not self.url:
            self.stop()  # never left running behind a failed start
            raise SystemExit(f"{(args or program)[0]} did not start")
        threading.Thread(target=lambda: [None for _ in self.p.stdout], daemon=True).start()

    def cpu(self):
        """User + system CPU seconds so far."""
        fields = pathlib.Path(f"/proc/{self.p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def status(self, key):
        for line in pathlib.Path(f"/proc/{self.p.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # kB → MiB
        return 0.0

    def reset_peak(self):
        """Resets the peak RSS (VmHWM) so the next reading covers one run only."""
        try:
            pathlib.Path(f"/proc/{self.p.pid}/clear_refs").write_text("5")
        except OSError:
            pass

    def stop(self):
        self.p.terminate()
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            self.p.kill()


class Client:
    """A keep-alive HTTP client for setup requests."""

    def __init__(self, base, headers):
        u = urllib.parse.urlsplit(base)
        self.prefix = u.path.rstrip("/")
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        self.headers = headers

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        headers = dict(self.headers, **({"Content-Type": "application/json"} if data else {}))
        self.conn.request(method, self.prefix + path, data, headers)
        r = self.conn.getresponse()
        text = r.read()
        if r.status >= 300:
            raise SystemExit(f"{method} {path}: {r.status} {text[:300]!r}")
        return json.loads(text) if text else None


def write_config(dir: pathlib.Path, tenants: int, backend: str = ""):
    """A config dir with `tenants` tenants on the demo-app mapping; `backend` adds lines (YAML, two
    spaces in) under each tenant's `backend:`."""
    (dir / "tenants").mkdir(parents=True)
    (dir / "mappings").mkdir()
    shutil.copy(ROOT / "mappings" / "demo-app.yaml", dir / "mappings" / "demo-app.yaml")
    sha = hashlib.sha256(TOKEN.encode()).hexdigest()
    for i in range(tenants):
        tid = "bench" if i == 0 else f"extra-{i}"
        (dir / "tenants" / f"{tid}.yaml").write_text(
            f"id: {tid}\nmapping: demo-app\nbackend:\n  base_url: \"${{DEMO_APP_URL}}\"\n"
            f"  credentials:\n    api_key: \"${{DEMO_APP_API_KEY}}\"\n{backend}"
            f"auth:\n  tokens:\n    - label: bench\n      sha256: \"{sha}\"\n"
            f"options:\n  max_results: 200\n")


def preload(app_url, users, groups, threads=8):
    """Creates the users straight in the app (fast), and teams of 1,000 members each."""
    def make(chunk):
        c = Client(app_url, {"X-Api-Key": API_KEY})
        for i in chunk:
            c.call("POST", "/api/v1/accounts", {"account": {
                "login": f"user{i}@example.com", "first_name": "Bench", "last_name": f"User {i}",
                "email": f"user{i}@example.com", "ext_ref": f"ext-{i}"}})
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(make, [range(k, users, threads) for k in range(threads)]))
    c = Client(app_url, {"X-Api-Key": API_KEY})
    logins = {}
    for offset in range(0, users, 200):
        for a in c.call("GET", f"/api/v1/accounts?offset={offset}&limit=200")["accounts"]:
            logins[a["login"]] = a["id"]
    first = [logins[f"user{i}@example.com"] for i in range(min(1000, users))]
    teams = {}
    for name in groups:
        team = c.call("POST", "/api/v1/teams", {"team": {"name": name}})["team"]
        c.call("PUT", f"/api/v1/teams/{team['id']}/members", {"account_ids": first})
        teams[name] = team["id"]
    return logins, teams


def adopt(gw_url, users, groups):
    """Lists everything once through the gateway, which gives each app object its SCIM id."""
    c = Client(gw_url + "/bench/scim/v2", {"Authorization": f"Bearer {TOKEN}"})
    ids = {}
    for start in range(1, users + 1, 200):
        for u in c.call("GET", f"/Users?startIndex={start}&count=200&attributes=userName")["Resources"]:
            ids[u["userName"]] = u["id"]
    gids = {}
    for name in groups:
        q = urllib.parse.quote(f'displayName eq "{name}"')
        gids[name] = c.call("GET", f"/Groups?filter={q}&excludedAttributes=members")["Resources"][0]["id"]
    return ids, gids


def wrk(url, method, path, body, ids, quota, conc, seconds, headers):
    threads = min(2, conc)
    args = ["wrk", "-t", str(threads), "-c", str(conc), "-d", f"{seconds}s", "--timeout", "10s", "-s", str(LUA)]
    for h in headers:
        args += ["-H", h]
    args += [url, "--", method, path, body, ids, str(quota), str(threads)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    line = next(l for l in out.splitlines() if l.startswith("BENCH "))
    return json.loads(line[len("BENCH "):])


def measure(procs, run):
    for p in procs.values():
        p.reset_peak()
    before = {k: p.cpu() for k, p in procs.items()}
    result = run()
    result["cpu"] = {k: p.cpu() - before[k] for k, p in procs.items()}
    result["peak_mib"] = {k: p.status("VmHWM") for k, p in procs.items()}
    return result


def scenarios(users, logins, ids, teams, gids, tmp):
    """(name, direct (method, path, body, ids, quota), gateway (...)) per scenario."""
    def ids_file(name, values):
        f = tmp / f"{name}.ids"
        f.write_text("\n".join(str(v) for v in values) + "\n")
        return str(f)
    names = [f"user{i}@example.com" for i in range(users)]
    app_ids = ids_file("app", [logins[n] for n in names])
    scim_ids = ids_file("scim", [ids[n] for n in names])
    name_ids = ids_file("names", [urllib.parse.quote(f'"{n}"') for n in names])
    login_ids = ids_file("logins", [urllib.parse.quote(n) for n in names])
    # Members to add: the users beyond the first 1,000 (who are members already).
    spare = names[1000:] if users > 1000 else names
    spare_app = ids_file("spare-app", [logins[n] for n in spare])
    spare_scim = ids_file("spare-scim", [ids[n] for n in spare])
    last = max(1, users - 99)
    user_body = json.dumps({"schemas": [USER], "userName": "new-{run}-{n}@example.com", "externalId": "new-{run}-{n}",
                            "name": {"givenName": "New", "familyName": "User"}, "active": True})
    account_body = json.dumps({"account": {"login": "new-{run}-{n}@example.com", "first_name": "New",
                                           "last_name": "User", "ext_ref": "new-{run}-{n}"}})
    put_body = json.dumps({"account": {"login": "{id}", "first_name": "Bench", "last_name": "User",
                                       "display": "Renamed", "status": "active"}})
    patch_body = json.dumps({"schemas": [PATCH], "Operations": [
        {"op": "replace", "path": "displayName", "value": "Renamed {n}"}]})
    add_body = json.dumps({"schemas": [PATCH], "Operations": [
        {"op": "add", "path": "members", "value": [{"value": "{m}"}]}]})
    return [
        ("GET /Users/{id}", ("GET", "/api/v1/accounts/{id}", "-", app_ids, 0),
         ("GET", "/bench/scim/v2/Users/{id}", "-", scim_ids, 0)),
        ("GET /Users?filter=userName eq", ("GET", "/api/v1/accounts?login={id}", "-", login_ids, 0),
         ("GET", "/bench/scim/v2/Users?filter=userName%20eq%20{id}", "-", name_ids, 0)),
        ("POST /Users", ("POST", "/api/v1/accounts", account_body, "-", 0),
         ("POST", "/bench/scim/v2/Users", user_body, "-", 0)),
        # Direct: the app's own update is a whole-object PUT; a SCIM PATCH through the gateway reads, then PUTs.
        ("PATCH replace one attribute", ("PUT", "/api/v1/accounts/{id}", put_body.replace('"{id}"', '"renamed-{run}-{n}@example.com"'), app_ids, 0),
         ("PATCH", "/bench/scim/v2/Users/{id}", patch_body, scim_ids, 0)),
        ("PATCH add member (group of 1,000)", ("POST", "/api/v1/teams/{team}/members", '{"account_id": {m}}', spare_app, len(spare) // 2),
         ("PATCH", "/bench/scim/v2/Groups/{group}", add_body, spare_scim, len(spare) // 2)),
        ("GET /Users?startIndex=9001&count=100", ("GET", f"/api/v1/accounts?offset={last - 1}&limit=100", "-", "-", 0),
         ("GET", f"/bench/scim/v2/Users?startIndex={last}&count=100", "-", "-", 0)),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=10, help="length of each run")
    ap.add_argument("--concurrency", default="16,64")
    ap.add_argument("--smoke", action="store_true", help="1,200 users, 1 s runs, c=4: the harness works")
    ap.add_argument("--telemetry", action="store_true", help="also run the gateway exporting OTLP to a local sink")
    ap.add_argument("--sampler", type=float, metavar="RATIO",
                    help="with --telemetry: sample this share of traces (parentbased_traceidratio); default: all")
    ap.add_argument("--trace-reads", type=float, metavar="RATIO",
                    help="with --telemetry: the gateway exports every failed request's and change's trace and this "
                         "share of the reads' (default: the gateway's, 0.1; 1 exports every trace)")
    ap.add_argument("--rounds", type=int, default=10,
                    help="with --telemetry: bursts per scenario on each gateway, taking turns (default 10)")
    ap.add_argument("--burst", type=int, default=2, help="with --telemetry: seconds per burst (default 2)")
    ap.add_argument("--only", metavar="TEXT", help="only the scenarios whose name contains TEXT (e.g. GET)")
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--debug-build", action="store_true",
                    help="use the debug binary `cargo test` built (CI's smoke run: no numbers worth reading)")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args()
    if a.smoke:
        a.users, a.seconds, a.concurrency, a.rounds, a.burst = 1200, 1, "4", 2, 1
    concurrency = [int(c) for c in a.concurrency.split(",")]
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    global BIN
    if a.debug_build:
        BIN = TARGET / "debug" / "scimbridge"
    if not a.no_build:
        profile = [] if a.debug_build else ["--release"]
        packages = ["-p", "scimbridge"] + (["-p", "otlp-sink"] if a.telemetry else [])
        subprocess.run(["cargo", "build", *profile, "--locked", *packages], cwd=ROOT, check=True)

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="scimbridge-bench-"))
    procs = []
    try:
        app = Proc(["demo-app", "--listen", "127.0.0.1:0"], {"DEMO_APP_API_KEY": API_KEY}, "demo-app listening on ")
        procs.append(app)
        write_config(tmp / "config", 1)
        env = {"DEMO_APP_URL": app.url, "DEMO_APP_API_KEY": API_KEY, "RUST_LOG": "warn"}
        gw = Proc(["serve", "--config", str(tmp / "config"), "--listen", "127.0.0.1:0", "--data-dir", str(tmp / "data")],
                  env, "scimbridge listening on ")
        procs.append(gw)
        time.sleep(0.5)
        idle_mib = gw.status("VmRSS")
        runs = [(c, kind) for c in concurrency for kind in ("direct", "gateway")]
        if a.telemetry:
            # A team per gateway, concurrency and round: every member add of a burst is new.
            runs += [(c, f"t{mode}{k}") for c in concurrency for mode in MODES for k in range(a.rounds)]
        groups = [f"bench-{kind}-{c}" for c, kind in runs]
        t0 = time.time()
        logins, teams = preload(app.url, a.users, groups)
        ids, gids = adopt(gw.url, a.users, groups)
        print(f"preloaded {a.users} users and {len(groups)} groups of 1,000 in {time.time() - t0:.1f} s", file=sys.stderr)

        direct_headers = [f"X-Api-Key: {API_KEY}", "Content-Type: application/json"]
        plan = scenarios(a.users, logins, ids, teams, gids, tmp)
        if a.only:
            plan = [p for p in plan if a.only in p[0]]

        def run(kind, spec, base, headers, watched, c):
            method, path, body, idf, quota = spec
            group = f"bench-{kind}-{c}"
            path = path.replace("{team}", str(teams[group])).replace("{group}", gids[group])
            # Names a run creates are its own: no run meets another's (a 409 would not be the gateway's cost).
            body = body.replace("{run}", f"{kind}-{c}")
            return measure(watched, lambda: wrk(base, method, path, body, idf, quota, c, a.seconds, headers))

        results = []
        for name, direct, through in plan:
            for c in concurrency:
                row = {"scenario": name, "concurrency": c,
                       "direct": run("direct", direct, app.url, direct_headers, {"app": app}, c),
                       "gateway": run("gateway", through, gw.url, SCIM_HEADERS, {"gateway": gw, "app": app}, c)}
                results.append(row)
                print_row(row, file=sys.stderr)
        peak_mib = max(r["gateway"]["peak_mib"]["gateway"] for r in results)
        if a.telemetry:
            gw.stop()
            telemetry(a, tmp, env, app, plan, gids, results, procs)
        report(a, results, idle_mib, peak_mib)
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def sink_program(debug):
    """The OTLP sink (bench/otlp-sink, compiled: it shares the cores with what is measured), built
    now if the profile has none yet (`--no-build` in CI, where the tests built only the gateway)."""
    profile = "debug" if debug else "release"
    exe = TARGET / profile / "otlp-sink"
    if not exe.exists():
        flags = [] if debug else ["--release"]
        subprocess.run(["cargo", "build", *flags, "--locked", "-p", "otlp-sink"], cwd=ROOT, check=True)
    return [str(exe)]


# The telemetry comparison: two gateways run side by side, one without OTLP and one with, and
# take turns in short bursts (off-on, then on-off, ...). This machine's speed drifts by 10-20%
# over minutes (other guests on the host), which a comparison of long passes run one after the
# other cannot tell from the telemetry's cost; adjacent bursts see the same machine.
MODES = ("off", "on")


def telemetry(a, tmp, env, app, plan, gids, results, procs):
    """Runs every scenario `a.rounds` times on each gateway in bursts of `a.burst` seconds and adds
    to each row `off` and `on` (requests, seconds, CPU of each process, errors) and `ratios`, the
    throughput ratio (on ÷ off) of each pair of adjacent bursts."""
    sink = Proc([], {}, "otlp-sink listening on ", program=sink_program(a.debug_build))
    procs.append(sink)
    on_env = dict(env, OTEL_EXPORTER_OTLP_ENDPOINT=sink.url, OTEL_METRIC_EXPORT_INTERVAL="5000")
    if a.sampler is not None:
        on_env.update(OTEL_TRACES_SAMPLER="parentbased_traceidratio", OTEL_TRACES_SAMPLER_ARG=str(a.sampler))
    if a.trace_reads is not None:
        on_env.update(SCIMBRIDGE_TRACE_READS=str(a.trace_reads))
    gws, logs = {}, {}
    for mode in MODES:
        # Each starts from a copy of the first gateway's state: the same SCIM ids for the same objects.
        shutil.copytree(tmp / "data", tmp / f"data-{mode}")
        logs[mode] = tmp / f"gateway-{mode}.log"
        gw = Proc(["serve", "--config", str(tmp / "config"), "--listen", "127.0.0.1:0", "--data-dir", str(tmp / f"data-{mode}")],
                  on_env if mode == "on" else env, "scimbridge listening on ", log=logs[mode])
        procs.append(gw)
        gws[mode] = gw
        adopt(gw.url, a.users, [])  # every record read once, into this process's cache, as in the main runs
    for row in results:
        row["off"], row["on"] = ({"requests": 0, "seconds": 0.0, "cpu": {}, "errors": 0} for _ in MODES)
        row["ratios"] = []
    before = sink_count(sink.url)
    requests_on = 0
    for row in results:
        c = row["concurrency"]
        for k in range(a.rounds):
            rates = {}
            for mode in (MODES if k % 2 == 0 else MODES[::-1]):
                method, path, body, idf, quota = next(p for p in plan if p[0] == row["scenario"])[2]
                group = f"bench-t{mode}{k}-{c}"
                path = path.replace("{group}", gids[group])
                body = body.replace("{run}", f"t{mode}{k}-{c}")
                gw = gws[mode]
                r = measure({"gateway": gw, "app": app, "sink": sink},
                            lambda: wrk(gw.url, method, path, body, idf, quota, c, a.burst, SCIM_HEADERS))
                total = row[mode]
                total["requests"] += r["requests"]
                total["seconds"] += r["duration_us"] / 1e6
                total["errors"] += errors(r)
                for who, cpu in r["cpu"].items():
                    total["cpu"][who] = total["cpu"].get(who, 0.0) + cpu
                rates[mode] = rate(r)
                # A burst that ran out of its members to add ended early: its rate says nothing.
                row["quota_hit"] = row.get("quota_hit", False) or (quota > 0 and r["requests"] >= 0.9 * quota * min(2, c))
                if mode == "on":
                    requests_on += r["requests"]
            row["ratios"].append(rates["on"] / max(rates["off"], 1e-9))
        print(f"  {row['scenario']} c={c}: OTLP on ÷ off, median of {a.rounds} pairs: "
              f"{statistics.median(row['ratios']):.3f}", file=sys.stderr)
    for gw in gws.values():
        gw.stop()  # the "on" one flushes what its exporter still holds
    time.sleep(0.5)
    spans = sink_count(sink.url) - before
    # The gateway says at exit how many records (spans and audit records) it lost in all.
    dropped = sum(int(n) for n in re.findall(r"lost_in_all\D{0,4}(\d+)", logs["on"].read_text()))
    results[0]["exported"] = {"spans": spans, "dropped": dropped, "requests": requests_on}


def sink_count(url):
    with urllib.request.urlopen(url + "/count", timeout=10) as r:
        return json.load(r)["spans"]


def per_request(r, who):
    return 1e6 * r["cpu"].get(who, 0.0) / max(r["requests"], 1)


def errors(r):
    return r["connect"] + r["read"] + r["write"] + r["status"] + r["timeout"]


def rate(r):
    return r["requests"] / (r["duration_us"] / 1e6)


def print_row(row, file):
    d, g = row["direct"], row["gateway"]
    print(f"  {row['scenario']} c={row['concurrency']}: direct {rate(d):.0f} req/s, gateway {rate(g):.0f} req/s, "
          f"errors {errors(d)}/{errors(g)}", file=file)


def report(a, results, idle_mib, peak_mib):
    kinds = ("direct", "gateway")
    head = ("| scenario | c | " + " | ".join(f"{k} req/s | {k} p50 ms | {k} p99 ms" for k in kinds)
            + " | app CPU µs/req (direct) | gateway CPU µs/req | app CPU µs/req (via gateway) | gateway ÷ app CPU"
            + " | added p99 ms | gateway peak MiB | errors |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in results:
        d, g = r["direct"], r["gateway"]
        cells = []
        for k in kinds:
            x = r[k]
            cells += [f"{rate(x):,.0f}", f"{x['p50_us'] / 1000:.2f}", f"{x['p99_us'] / 1000:.2f}"]
        app_direct, gw_cpu = per_request(d, "app"), per_request(g, "gateway")
        ratio = gw_cpu / app_direct if app_direct else float("nan")
        errs = "/".join(str(errors(r[k])) for k in kinds)
        lines.append(f"| {r['scenario']} | {r['concurrency']} | " + " | ".join(cells)
                     + f" | {app_direct:.0f} | {gw_cpu:.0f} | {per_request(g, 'app'):.0f} | {ratio:.2f}"
                     + f" | {(g['p99_us'] - d['p99_us']) / 1000:.2f} | {g['peak_mib']['gateway']:.1f} | {errs} |")
    if "on" in results[0]:
        lines += ["", f"Telemetry: two gateways side by side, without OTLP and with, taking turns in {a.rounds} bursts of "
                      f"{a.burst} s each per row. Throughput on ÷ off: the median of the pairs of adjacent bursts, and "
                      "the middle half of them; CPU time per request: sums over all bursts.", "",
                  "| scenario | c | req/s off | req/s on | on ÷ off (median) | middle half | gateway CPU µs/req off | on"
                  " | on ÷ off | OTLP sink CPU µs/req | errors off/on |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for r in results:
            off, on = r["off"], r["on"]
            def cpu(t, who):
                return 1e6 * t["cpu"].get(who, 0.0) / max(t["requests"], 1)
            def tput(t):
                return t["requests"] / max(t["seconds"], 1e-9)
            if r.get("quota_hit"):
                median = spread = "— (bursts ran out of members)"
            else:
                q = statistics.quantiles(r["ratios"], n=4) if len(r["ratios"]) > 1 else r["ratios"] * 3
                median, spread = f"{statistics.median(r['ratios']):.3f}", f"{q[0]:.2f}–{q[2]:.2f}"
            lines.append(f"| {r['scenario']} | {r['concurrency']} | {tput(off):,.0f} | {tput(on):,.0f}"
                         f" | {median} | {spread} | {cpu(off, 'gateway'):.0f} | {cpu(on, 'gateway'):.0f}"
                         f" | {cpu(on, 'gateway') / max(cpu(off, 'gateway'), 1e-9):.3f} | {cpu(on, 'sink'):.0f}"
                         f" | {off['errors']}/{on['errors']} |")
        e = results[0]["exported"]
        lines += ["", f"Spans the sink received: {e['spans']:,} for {e['requests']:,} requests "
                      f"({e['spans'] / max(e['requests'], 1):.2f} per request); records the gateway lost on the way: {e['dropped']:,}."]
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
    summary = (f"scimbridge bench: {a.users} users, {a.seconds} s per run, wrk on loopback; {os.cpu_count()} CPUs ({cpu}); "
               f"gateway idle RSS {idle_mib:.1f} MiB, peak {peak_mib:.1f} MiB"
               + (f"; OTLP traces: failures, changes and {0.1 if a.trace_reads is None else a.trace_reads:g} of reads"
                  if a.telemetry else "")
               + (f"; head sampler {a.sampler:g}" if a.telemetry and a.sampler is not None else ""))
    table = "\n".join([summary, "", *lines])
    print(table)
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (out / f"{stamp}.md").write_text(table + "\n")
    (out / f"{stamp}.json").write_text(json.dumps({"users": a.users, "seconds": a.seconds, "idle_mib": idle_mib,
                                                   "peak_mib": peak_mib, "results": results}, indent=1) + "\n")
    print(f"\nwritten to {out / stamp}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
