#!/usr/bin/env python3
"""The scale benchmark: what a tenant's size, the number of tenants and an initial sync cost the
gateway, measured as ratios in one run (the scale targets of the performance issue).

    python3 bench/scale.py                          # all three parts, full size
    python3 bench/scale.py lookups                  # one part (lookups, tenants, sync; any of them)
    python3 bench/scale.py --users-large 5000 --seconds 2 --tenants 100 --sync-users 1000 --sync-rate 200
                                                    # quick, while changing this script

lookups  Two pairs of demo app + gateway, one after the other, one with --users-small (1,000) users
         and one with --users-large (100,000), preloaded straight into the app and adopted through
         the gateway (every user listed once, count=200 pages; timed). Then wrk (bench/scenario.lua,
         c=--concurrency, --seconds each) against `userName eq` and `externalId eq` lookups of random
         existing users through the gateway, and the app's own `?login=` lookup for reference.
         Per run: req/s, p50/p99, the gateway's CPU µs per request (/proc/<pid>/stat); per size the
         gateway's RSS after setup; and large ÷ small of CPU per request and of p50 (1.0: O(1)).
tenants  Config dirs with 1 and with --tenants (1,000) tenants (bench/run.py's write_config: all on
         the demo-app mapping, each with its own token hash). Each is started --repeat (3) times,
         each time with a fresh data dir: wall time from process start to the `scimbridge listening
         on` line (min and median), and VmRSS 1 s after it; `scimbridge check --config` is timed too.
sync     One tenant whose `backend.rate_limit` is {per_second: --sync-rate, burst: --sync-burst,
         max_wait_ms: 60000}, a fresh gateway and an empty demo app; --sync-users (10,000) Entra-shaped
         POST /Users from --sync-concurrency (16) Python threads on keep-alive connections. The app
         calls made are counted by the demo app itself (its `/_stats/arrivals` test hook, which logs
         every /api request on arrival). Reports wall time, creates/s, app calls/s, the lower bound
         (app calls - burst) ÷ rate and wall ÷ lower bound (1.0: limited only by the outbound rate).

Every process started here is stopped at exit. Tables are printed and written with the raw numbers
to bench/results/scale-<time>.md and .json. Nothing is asserted: the numbers are for people.
"""

import argparse
import http.client
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import run as bench  # noqa: E402  (bench/run.py: Proc, Client, write_config, preload, adopt, wrk)

PARTS = ("lookups", "tenants", "sync")
GW_READY = "scimbridge listening on "
APP_READY = "demo-app listening on "
SCIM_HEADERS = [f"Authorization: Bearer {bench.TOKEN}", "Content-Type: application/scim+json"]
APP_HEADERS = [f"X-Api-Key: {bench.API_KEY}"]


def start_app(procs):
    app = bench.Proc(["demo-app", "--listen", "127.0.0.1:0"], {"DEMO_APP_API_KEY": bench.API_KEY}, APP_READY)
    procs.append(app)
    return app


def gateway_env(app):
    return {"DEMO_APP_URL": app.url, "DEMO_APP_API_KEY": bench.API_KEY, "RUST_LOG": "warn"}


def start_gateway(procs, config, data, app):
    gw = bench.Proc(["serve", "--config", str(config), "--listen", "127.0.0.1:0", "--data-dir", str(data)],
                    gateway_env(app), GW_READY)
    procs.append(gw)
    return gw


def stop(procs, *which):
    for p in which:
        p.stop()
        procs.remove(p)


def ms(us):
    return us / 1000


def median(xs):
    return statistics.median(xs)


# ---------------------------------------------------------------------------------------------- lookups

def external_id_owner(config):
    """Who answers `externalId eq`: the app (its search, pushed down) or the gateway's store, as
    `scimbridge explain` renders the request's app calls."""
    out = subprocess.run([str(bench.BIN), "explain", "--config", str(config), "--tenant", "bench", "GET",
                          '/Users?filter=externalId eq "ext-1"'], capture_output=True, text=True,
                         env={**os.environ, "DEMO_APP_URL": "http://127.0.0.1:1", "DEMO_APP_API_KEY": bench.API_KEY})
    text = (out.stdout + out.stderr).strip()
    kept_by = "app (ext_ref, searched by the app)" if "ext_ref=" in text else "gateway (its store's externalId index)"
    return kept_by, text


def ids_file(tmp, name, values):
    f = tmp / f"{name}.ids"
    f.write_text("\n".join(values) + "\n")
    return str(f)


def lookup_runs(tmp, users):
    """(name, target, method path, ids file) of each measured run."""
    names = [f"user{i}@example.com" for i in range(users)]
    q = urllib.parse.quote
    return [
        ("gateway: userName eq", "gateway", "/bench/scim/v2/Users?filter=userName%20eq%20{id}",
         ids_file(tmp, f"names-{users}", [q(f'"{n}"') for n in names])),
        ("gateway: externalId eq", "gateway", "/bench/scim/v2/Users?filter=externalId%20eq%20{id}",
         ids_file(tmp, f"ext-{users}", [q(f'"ext-{i}"') for i in range(users)])),
        ("app direct: ?login=", "app", "/api/v1/accounts?login={id}",
         ids_file(tmp, f"logins-{users}", [q(n) for n in names])),
    ]


def lookups_at(a, tmp, procs, users):
    """One demo app + gateway with `users` users: setup times, RSS, and the lookup runs."""
    base = tmp / f"lookups-{users}"
    bench.write_config(base / "config", 1)
    app = start_app(procs)
    gw = start_gateway(procs, base / "config", base / "data", app)
    time.sleep(0.5)
    size = {"users": users, "idle_rss_mib": gw.status("VmRSS")}
    t0 = time.monotonic()
    bench.preload(app.url, users, [], threads=a.preload_threads)
    size["preload_s"] = time.monotonic() - t0
    t0 = time.monotonic()
    ids = bench.adopt(gw.url, users, [])[0]
    size["adopt_s"] = time.monotonic() - t0
    if len(ids) != users:
        raise SystemExit(f"adopted {len(ids)} users, expected {users}")
    size["setup_rss_mib"] = gw.status("VmRSS")
    print(f"  {users} users: preload {size['preload_s']:.1f} s, adopt {size['adopt_s']:.1f} s, "
          f"gateway RSS {size['setup_rss_mib']:.1f} MiB", file=sys.stderr)
    size["runs"] = []
    for name, target, path, idf in lookup_runs(tmp, users):
        url, headers = (gw.url, SCIM_HEADERS) if target == "gateway" else (app.url, APP_HEADERS)
        bench.wrk(url, "GET", path, "-", idf, 0, a.concurrency, 1, headers)  # warm-up, not measured
        r = bench.measure({"gateway": gw, "app": app},
                          lambda: bench.wrk(url, "GET", path, "-", idf, 0, a.concurrency, a.seconds, headers))
        r["name"] = name
        size["runs"].append(r)
        print(f"  {users} users, {name}: {bench.rate(r):,.0f} req/s, p50 {ms(r['p50_us']):.2f} ms, "
              f"errors {bench.errors(r)}", file=sys.stderr)
    size["end_rss_mib"] = gw.status("VmRSS")
    stop(procs, gw, app)
    return size


def lookups(a, tmp, procs):
    sizes = [lookups_at(a, tmp, procs, n) for n in (a.users_small, a.users_large)]
    kept_by, explain = external_id_owner(tmp / f"lookups-{a.users_small}" / "config")
    return {"sizes": sizes, "external_id_kept_by": kept_by, "explain_external_id": explain}


def lookups_table(r):
    small, large = r["sizes"]
    n_s, n_l = f"{small['users']:,}", f"{large['users']:,}"
    lines = [f"Lookups: c={r['concurrency']}, {r['seconds']} s per run; externalId is kept by the "
             f"{r['external_id_kept_by']}.", "",
             "| users | preload s | adopt s (list all, count=200) | gateway idle RSS MiB | gateway RSS after setup MiB"
             " | gateway RSS after runs MiB |",
             "| --- | --- | --- | --- | --- | --- |"]
    for s in r["sizes"]:
        lines.append(f"| {s['users']:,} | {s['preload_s']:.1f} | {s['adopt_s']:.1f} | {s['idle_rss_mib']:.1f}"
                     f" | {s['setup_rss_mib']:.1f} | {s['end_rss_mib']:.1f} |")
    lines += ["", "| lookup | users | req/s | p50 ms | p99 ms | gateway CPU µs/req | app CPU µs/req | errors |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i in range(len(small["runs"])):
        for s in (small, large):
            x = s["runs"][i]
            gw = f"{bench.per_request(x, 'gateway'):.0f}" if x["name"].startswith("gateway") else "–"
            lines.append(f"| {x['name']} | {s['users']:,} | {bench.rate(x):,.0f} | {ms(x['p50_us']):.2f}"
                         f" | {ms(x['p99_us']):.2f} | {gw} | {bench.per_request(x, 'app'):.0f} | {bench.errors(x)} |")
    lines += ["", f"| lookup | gateway CPU/req {n_l} ÷ {n_s} | p50 {n_l} ÷ {n_s} | app CPU/req {n_l} ÷ {n_s} |",
              "| --- | --- | --- | --- |"]
    for xs, xl in zip(small["runs"], large["runs"]):
        gw = f"{ratio(xl, xs, cpu('gateway')):.2f}" if xs["name"].startswith("gateway") else "–"
        lines.append(f"| {xs['name']} | {gw} | {ratio(xl, xs, lambda x: x['p50_us']):.2f}"
                     f" | {ratio(xl, xs, cpu('app')):.2f} |")
    return lines


def cpu(who):
    return lambda r: bench.per_request(r, who)


def ratio(large, small, of):
    return of(large) / of(small) if of(small) else float("nan")


# ---------------------------------------------------------------------------------------------- tenants

def timed_start(procs, config, data, app):
    """Seconds from process start to the ready line, and VmRSS (MiB) 1 s after it."""
    t0 = time.monotonic()
    gw = start_gateway(procs, config, data, app)
    took = time.monotonic() - t0
    time.sleep(1)
    rss = gw.status("VmRSS")
    stop(procs, gw)
    return took, rss


def timed_check(config, app):
    t0 = time.monotonic()
    out = subprocess.run([str(bench.BIN), "check", "--config", str(config)], capture_output=True, text=True,
                         env={**os.environ, **gateway_env(app)})
    took = time.monotonic() - t0
    if out.returncode != 0:
        raise SystemExit(f"scimbridge check --config {config} failed:\n{out.stderr[-2000:]}")
    return took


def tenants(a, tmp, procs):
    app = start_app(procs)
    rows = []
    for n in (1, a.tenants):
        config = tmp / f"tenants-{n}" / "config"
        bench.write_config(config, n)
        starts = [timed_start(procs, config, tmp / f"tenants-{n}" / f"data-{k}", app) for k in range(a.repeat)]
        checks = [timed_check(config, app) for _ in range(a.repeat)]
        row = {"tenants": n, "start_s": [s for s, _ in starts], "rss_mib": [m for _, m in starts], "check_s": checks}
        rows.append(row)
        print(f"  {n} tenant(s): start {min(row['start_s']):.3f} s (min), RSS {median(row['rss_mib']):.1f} MiB, "
              f"check {min(checks):.3f} s", file=sys.stderr)
    stop(procs, app)
    return {"rows": rows}


def tenants_table(r):
    one, many = r["rows"]
    n = many["tenants"]
    lines = [f"Tenants: each config started {len(one['start_s'])} times (fresh data dir each time); RSS is VmRSS 1 s "
             "after the ready line.", "",
             "| tenants | start s (min) | start s (median) | RSS MiB (median) | RSS MiB (max) | check s (min) | check s (median) |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in r["rows"]:
        lines.append(f"| {row['tenants']:,} | {min(row['start_s']):.3f} | {median(row['start_s']):.3f}"
                     f" | {median(row['rss_mib']):.1f} | {max(row['rss_mib']):.1f} | {min(row['check_s']):.3f}"
                     f" | {median(row['check_s']):.3f} |")
    added = median(many["rss_mib"]) - median(one["rss_mib"])
    lines += ["", f"| {n:,} tenants vs 1 | value |", "| --- | --- |",
              f"| added RSS MiB (median − median) | {added:.1f} |",
              f"| added RSS per tenant KiB | {1024 * added / max(n - 1, 1):.1f} |",
              f"| start s, median ({n:,} ÷ 1) | {median(many['start_s']):.3f} ({median(many['start_s']) / median(one['start_s']):.1f}×) |",
              f"| added start s (median − median) | {median(many['start_s']) - median(one['start_s']):.3f} |",
              f"| check s, median ({n:,} ÷ 1) | {median(many['check_s']):.3f} ({median(many['check_s']) / median(one['check_s']):.1f}×) |"]
    return lines


# ---------------------------------------------------------------------------------------------- sync

def arrivals(app):
    """Every /api request the demo app has seen: (count, arrivals kept)."""
    r = bench.Client(app.url, {"X-Api-Key": bench.API_KEY}).call("GET", "/_stats/arrivals")
    return len(r["arrivals"]) + r["dropped"], r["arrivals"]


def entra_user(n):
    return {"schemas": [bench.USER], "userName": f"sync-{n}@example.com", "externalId": f"sync-{n}",
            "name": {"givenName": "Sync", "familyName": f"User {n}"}, "active": True}


def post_all(gw_url, users, concurrency):
    """POSTs every user from `concurrency` threads, each on its own keep-alive connection; returns
    the count of each status (0: transport error)."""
    next_n = iter(range(users))
    lock = threading.Lock()
    statuses = {}

    def worker():
        c = bench.Client(gw_url + "/bench/scim/v2", {"Authorization": f"Bearer {bench.TOKEN}",
                                                    "Content-Type": "application/scim+json"})
        while True:
            with lock:
                n = next(next_n, None)
            if n is None:
                return
            try:
                c.conn.request("POST", c.prefix + "/Users", json.dumps(entra_user(n)), c.headers)
                r = c.conn.getresponse()
                r.read()
                status = r.status
            except (OSError, http.client.HTTPException):
                c.conn.close()
                status = 0
            with lock:
                statuses[status] = statuses.get(status, 0) + 1

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def sync(a, tmp, procs):
    config = tmp / "sync" / "config"
    limit = f"  rate_limit: {{ per_second: {a.sync_rate}, burst: {a.sync_burst}, max_wait_ms: 60000 }}\n"
    bench.write_config(config, 1, backend=limit)
    app = start_app(procs)
    gw = start_gateway(procs, config, tmp / "sync" / "data", app)
    time.sleep(0.5)
    before, _ = arrivals(app)
    t0 = time.monotonic()
    r = bench.measure({"gateway": gw, "app": app},
                      lambda: {"statuses": post_all(gw.url, a.sync_users, a.sync_concurrency)})
    wall = time.monotonic() - t0
    after, log = arrivals(app)
    calls = after - before
    new = log[len(log) - min(calls, len(log)):]
    kinds = {}
    for x in new:
        kinds[call_kind(x)] = kinds.get(call_kind(x), 0) + 1
    span = (new[-1]["at_us"] - new[0]["at_us"]) / 1e6 if len(new) > 1 else 0.0
    r.update({"users": a.sync_users, "concurrency": a.sync_concurrency, "rate": a.sync_rate, "burst": a.sync_burst,
              "wall_s": wall, "app_calls": calls, "app_calls_by_kind": kinds, "app_span_s": span,
              "gateway_rss_mib": gw.status("VmRSS")})
    print(f"  sync: {a.sync_users} creates in {wall:.1f} s, {calls} app calls, statuses {r['statuses']}", file=sys.stderr)
    stop(procs, gw, app)
    return r


def call_kind(arrival):
    """`POST /api/v1/accounts`, `GET /api/v1/accounts/{id}`: an app call without its ids."""
    path = "/".join("{id}" if part.isdigit() else part for part in arrival["path"].split("/"))
    return f"{arrival['method']} {path}"


def sync_table(r):
    created = r["statuses"].get(201, 0)
    errors = sum(v for k, v in r["statuses"].items() if k != 201)
    lower = max(r["app_calls"] - r["burst"], 0) / r["rate"]
    calls = ", ".join(f"{k}: {v:,}" for k, v in sorted(r["app_calls_by_kind"].items()))
    return [f"Initial sync: {r['users']:,} Entra-shaped POST /Users at c={r['concurrency']}; outbound "
            f"`rate_limit: {{ per_second: {r['rate']}, burst: {r['burst']}, max_wait_ms: 60000 }}`; app calls "
            f"counted by the demo app ({calls}).", "",
            "| creates | wall s | creates/s | app calls | app calls per create | app calls/s | app calls/s (first to last arrival)"
            " | configured rate /s | lower bound s ((calls − burst) ÷ rate) | wall ÷ lower bound | gateway CPU µs/create"
            " | app CPU µs/call | gateway RSS MiB | errors (non-201) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
            f"| {created:,} | {r['wall_s']:.2f} | {r['users'] / r['wall_s']:.1f} | {r['app_calls']:,}"
            f" | {r['app_calls'] / max(r['users'], 1):.2f} | {r['app_calls'] / r['wall_s']:.1f}"
            f" | {r['app_calls'] / r['app_span_s'] if r['app_span_s'] else float('nan'):.1f} | {r['rate']}"
            f" | {lower:.2f} | {r['wall_s'] / lower if lower else float('nan'):.3f}"
            f" | {1e6 * r['cpu']['gateway'] / max(r['users'], 1):.0f} | {1e6 * r['cpu']['app'] / max(r['app_calls'], 1):.0f}"
            f" | {r['gateway_rss_mib']:.1f} | {errors} {json.dumps(r['statuses'])} |"]


# ---------------------------------------------------------------------------------------------- main

def machine():
    cpu = ""
    for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=bench.ROOT, capture_output=True,
                            text=True).stdout.strip()
    return f"{os.cpu_count()} CPUs ({cpu}), commit {commit}, {time.strftime('%Y-%m-%d')}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("parts", nargs="*", metavar="part", help=f"any of {', '.join(PARTS)} (default: all)")
    ap.add_argument("--users-small", type=int, default=1_000)
    ap.add_argument("--users-large", type=int, default=100_000)
    ap.add_argument("--seconds", type=int, default=10, help="length of each lookup run")
    ap.add_argument("--concurrency", type=int, default=16, help="wrk connections of the lookup runs")
    ap.add_argument("--preload-threads", type=int, default=16)
    ap.add_argument("--tenants", type=int, default=1_000)
    ap.add_argument("--repeat", type=int, default=3, help="starts (and checks) of each tenant config")
    ap.add_argument("--sync-users", type=int, default=10_000)
    ap.add_argument("--sync-rate", type=int, default=400, help="backend.rate_limit.per_second of the sync tenant")
    ap.add_argument("--sync-burst", type=int, default=40, help="backend.rate_limit.burst of the sync tenant")
    ap.add_argument("--sync-concurrency", type=int, default=16)
    ap.add_argument("--no-build", action="store_true")
    ap.add_argument("--out", default=str(bench.ROOT / "bench" / "results"))
    a = ap.parse_args()
    if unknown := set(a.parts) - set(PARTS):
        ap.error(f"unknown part(s): {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    parts = [p for p in PARTS if p in a.parts] or list(PARTS)
    if shutil.which("wrk") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "scimbridge"], cwd=bench.ROOT, check=True)

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="scimbridge-scale-"))
    procs = []
    results = {"machine": machine(), "args": vars(a)}
    tables = [f"scimbridge scale: {results['machine']}; loopback, release build"]
    try:  # a part stops what it started; after an error, this stops whatever is left
        for part in parts:
            t0 = time.monotonic()
            print(f"{part} ...", file=sys.stderr)
            r = {"lookups": lookups, "tenants": tenants, "sync": sync}[part](a, tmp, procs)
            r["part_s"] = time.monotonic() - t0
            if part == "lookups":
                r.update(concurrency=a.concurrency, seconds=a.seconds)
            results[part] = r
            table = {"lookups": lookups_table, "tenants": tenants_table, "sync": sync_table}[part](r)
            tables += ["", f"## {part} ({r['part_s']:.0f} s)", "", *table]
            print("\n".join(["", *table]))
    finally:
        for p in procs:
            p.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    report(a, "\n".join(tables), results)


def report(a, text, results):
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stamp = "scale-" + time.strftime("%Y%m%d-%H%M%S")
    (out / f"{stamp}.md").write_text(text + "\n")
    (out / f"{stamp}.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    print(f"\nwritten to {out / stamp}.md and .json", file=sys.stderr)


if __name__ == "__main__":
    main()
