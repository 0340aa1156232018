#!/usr/bin/env python3
"""Renders bench/run.sh's RESULT lines as the markdown of docs/benchmarks.md."""
import argparse
import datetime
import json
import os
import platform


def machine():
    model = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = "?"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    mem = "%.1f GB" % (int(line.split()[1]) / 1024 / 1024)
    except OSError:
        pass
    load = " ".join("%.2f" % x for x in os.getloadavg())
    return "%s, %d cores, %s RAM, Linux %s; load average at the end %s" % (
        model, os.cpu_count() or 0, mem, platform.release(), load)


def fmt(x, digits=1):
    if x is None:
        return "–"
    return ("%." + str(digits) + "f") % x


def ratio(a, b):
    if a is None or b in (None, 0):
        return None
    return a / b


def verdict(ok):
    if ok is None:
        return "not measured"
    return "**met**" if ok else "**not met**"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", required=True)
    ap.add_argument("--mode", default="full")
    ap.add_argument("--commit", default="?")
    ap.add_argument("--postgres", default="?")
    ap.add_argument("--dbmate", default="-")
    ap.add_argument("--alembic", default="-")
    ap.add_argument("--notes")
    ap.add_argument("--gbench", help="Google Benchmark JSON of schemagate_readiness_bench")
    args = ap.parse_args()

    rows = []
    with open(args.results) as f:
        for line in f:
            if line.startswith("RESULT "):
                rows.append(json.loads(line[len("RESULT "):]))
    fanout_all = {(r["n"], r.get("set_size", 1)): r for r in rows if r["bench"] == "fanout"}
    fanout = {n: r for (n, size), r in fanout_all.items() if size == 1}
    bare = {r["n"]: r for r in rows if r["bench"] == "fanout_bare"}
    check = [r for r in rows if r["bench"] == "check"]
    apply_ = {r["n"]: r for r in rows if r["bench"] == "apply"}
    storm = {r["m"]: r for r in rows if r["bench"] == "storm"}
    agent = next((r for r in rows if r["bench"] == "agent"), None)
    agent_dynamic = next((r for r in rows if r["bench"] == "agent_dynamic"), None)

    out = []
    w = out.append
    w("# Benchmarks")
    w("")
    w("Written by `bench/run.sh%s` (%s run). Absolute times drift from run to run on this "
      "shared machine; the ratios measured in the same run are what the targets are about."
      % ("" if args.mode == "full" else " --" + args.mode, args.mode))
    w("")
    w("Rerun: `bench/run.sh` (full, about 5 minutes; writes this file) or `bench/run.sh --quick` "
      "(about 1.5 minutes; writes bench/results/benchmarks-quick.md). `SCHEMAGATE_BENCH_DATABASE_URL` "
      "points it at an existing server instead of a private one.")
    w("")
    w("- Date: %s" % datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"))
    w("- Commit: `%s`" % args.commit)
    w("- Machine: %s" % machine())
    w("- PostgreSQL: %s" % args.postgres)
    w("- Peers: dbmate %s (npm package, its native binary), Alembic %s (Debian python3-alembic, psycopg2)"
      % (args.dbmate, args.alembic))
    w("")

    # --- Targets
    w("## Targets")
    w("")
    w("| target | measured | verdict |")
    w("| --- | --- | --- |")
    def floor(n, key, unit):
        b = bare.get(n)
        if b is None:
            return ""
        value = b["after"]["peak_rss_mb"] if key == "rss" else b["p99_ms"]
        return "; bare gRPC server %s %s" % (fmt(value), unit)
    for n, limit in ((1000, 50), (10000, 250)):
        r = fanout.get(n)
        w("| fan-out p99 ≤ %d ms at %s waiters | %s%s | %s |" % (
            limit, format(n, ","), (fmt(r["p99_ms"]) + " ms") if r else "–", floor(n, "p99", "ms"),
            verdict(None if r is None else (r["p99_ms"] <= limit and r["not_ready"] == 0))))
    r = fanout.get(10000)
    w("| coordinator RSS ≤ 150 MB at 10,000 waiters | %s%s | %s |" % (
        (fmt(r["after"]["peak_rss_mb"]) + " MB peak") if r else "–", floor(10000, "rss", "MB peak"),
        verdict(None if r is None else r["after"]["peak_rss_mb"] <= 150)))
    if check:
        worst = min(check, key=lambda c: c["coordinator_qps"] / c["echo_qps"])
        wr = worst["coordinator_qps"] / worst["echo_qps"]
        w("| Check ≥ 0.9 × bare echo | %s (lowest, at %d in flight) | %s |" % (
            fmt(wr, 2), worst["in_flight"], verdict(wr >= 0.9)))
    for n, r in sorted(apply_.items()):
        sr = ratio(r["schemagate_s"], r["floor_s"])
        below = [r[k] is None or r["schemagate_s"] < r[k] for k in ("dbmate_s", "alembic_s")]
        limit = 1.15 if n >= 10000 else 1.1
        w("| apply %s ≤ %s × floor%s | %s × floor; dbmate %s ×, Alembic %s × | %s |" % (
            format(n, ","), limit, ", below dbmate and Alembic" if n < 10000 else "", fmt(sr, 2),
            fmt(ratio(r["dbmate_s"], r["floor_s"]), 2),
            fmt(ratio(r["alembic_s"], r["floor_s"]), 2),
            verdict(sr is not None and sr <= limit and (n >= 10000 or all(below)))))
    if storm:
        m = max(storm)
        r = storm[m]
        ok = r["schemagate_s"] <= r["floor_s"] + 1 and r["schemagate_failures"] == 0
        w("| storm of %d: all READY within floor + 1 s, zero failures | %s s (floor %s s), %d failures | %s |" % (
            m, fmt(r["schemagate_s"], 2), fmt(r["floor_s"], 2), r["schemagate_failures"], verdict(ok)))
    if agent:
        ok = agent["wall_ms_p50"] <= 15 and agent["rss_kb_max"] <= 10 * 1024
        w("| agent check ≤ 15 ms wall, ≤ 10 MB RSS | %s ms median (max %s), %s MB peak RSS (%s) | %s |" % (
            fmt(agent["wall_ms_p50"]), fmt(agent["wall_ms_max"]), fmt(agent["rss_kb_max"] / 1024),
            agent.get("linkage", "dynamic"), verdict(ok)))
    w("")

    # --- Details
    if fanout:
        w("## Fan-out: commit to READY on N waiting Wait streams")
        w("")
        w("| N | p50 ms | p99 ms | max ms | not READY | RSS idle MB | RSS waiting MB | RSS peak MB | threads waiting | threads after | CPU s coordinator / client |")
        w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for (n, size), r in sorted(fanout_all.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            w("| %s%s | %s | %s | %s | %d | %s | %s | %s | %d | %d | %s / %s |" % (
                format(n, ","), "" if size == 1 else " (set of %s)" % format(size, ","), fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["max_ms"]), r["not_ready"],
                fmt(r["idle"]["rss_mb"]), fmt(r["waiting"]["rss_mb"]), fmt(r["after"]["peak_rss_mb"]),
                r["waiting"]["threads"], r["after"]["threads"], fmt(r.get("coordinator_cpu_s"), 2),
                fmt(r.get("client_cpu_s"), 2)))
        for n, r in sorted(bare.items()):
            w("| %s (bare gRPC server) | %s | %s | %s | %d | %s | %s | %s | %d | %d | %s / %s |" % (
                format(n, ","), fmt(r["p50_ms"]), fmt(r["p99_ms"]), fmt(r["max_ms"]), r["not_ready"],
                fmt(r["idle"]["rss_mb"]), fmt(r["waiting"]["rss_mb"]), fmt(r["after"]["peak_rss_mb"]),
                r["waiting"]["threads"], r["after"]["threads"], fmt(r.get("coordinator_cpu_s"), 2),
                fmt(r.get("client_cpu_s"), 2)))
        if bare:
            w("")
            w("The bare gRPC server is `schemagate_bench echo-server`: the AgentService on the "
              "coordinator's server settings with nothing behind it; its Wait streams get PENDING, "
              "then all READY at once on one thread when released (latency from the release "
              "request). It is the floor Debian's gRPC 1.51 sets on this machine; the bench client "
              "shares the two cores in both rows.")
        w("")
    if args.gbench and os.path.exists(args.gbench):
        with open(args.gbench) as f:
            gb = json.load(f)
        w("## Per-stream answer (Google Benchmark, `schemagate_readiness_bench`)")
        w("")
        w("EvaluateReadiness + ToProto for one READY stream, by size of the applied set. "
          "Publish pays this once per distinct target per snapshot (SharedAnswer), not once per stream.")
        w("")
        w("| benchmark | CPU ns | wall ns |")
        w("| --- | ---: | ---: |")
        for b in gb.get("benchmarks", []):
            w("| %s | %s | %s |" % (b["name"], fmt(b["cpu_time"], 0), fmt(b["real_time"], 0)))
        w("")
    if check:
        w("## Check: closed-loop unary calls, schemagated beside a bare echo")
        w("")
        w("| in flight | schemagated calls/s | p99 ms | bare echo calls/s | p99 ms | ratio | server CPU s (sg / echo) |")
        w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for r in check:
            w("| %d | %s | %s | %s | %s | %s | %s / %s |" % (
                r["in_flight"], fmt(r["coordinator_qps"], 0), fmt(r["coordinator_p99_ms"], 2),
                fmt(r["echo_qps"], 0), fmt(r["echo_p99_ms"], 2),
                fmt(r["coordinator_qps"] / r["echo_qps"], 2), fmt(r["coordinator_cpu_s"], 2),
                fmt(r["echo_cpu_s"], 2)))
        w("")
    if apply_:
        w("## Apply: trivial migrations, one transaction each (seconds, median of the rounds)")
        w("")
        w("| migrations | floor (one psql session) | schemagate | dbmate | Alembic | schemagate / floor | dbmate / floor | Alembic / floor | CPU ms per migration: schemagate (coordinator + ctl) / dbmate |")
        w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for n, r in sorted(apply_.items()):
            cpu = lambda k: None if r.get(k) is None else 1000.0 * r[k] / n
            w("| %s | %s | %s | %s | %s | %s | %s | %s | %s / %s |" % (
                format(n, ","), fmt(r["floor_s"], 3), fmt(r["schemagate_s"], 3), fmt(r["dbmate_s"], 3),
                fmt(r["alembic_s"], 3), fmt(ratio(r["schemagate_s"], r["floor_s"]), 2),
                fmt(ratio(r["dbmate_s"], r["floor_s"]), 2), fmt(ratio(r["alembic_s"], r["floor_s"]), 2),
                fmt(cpu("schemagate_cpu_s"), 3), fmt(cpu("dbmate_cpu_s"), 3)))
        w("")
        w("CPU: user + system seconds of the tool's own processes during the apply "
          "(schemagated from /proc plus schemagatectl; dbmate's process), median of the rounds, "
          "per migration. The server's work is the same SQL for both. Peers are not run at "
          "10,000.")
        w("")
        w("Every round of each tool: " + "; ".join(
            "%d: %s" % (n, ", ".join("%s %s" % (k, r["all"][k]) for k in r["all"]))
            for n, r in sorted(apply_.items())))
        w("")
    if storm:
        w("## Storm: M agents started together with the coordinator, %d pending migrations"
          % next(iter(storm.values()))["migrations"])
        w("")
        w("| M | floor s | schemagate: all READY s | failed agents | rows applied | dbmate retry loops: all done s | failed dbmate runs | containers that saw a failure |")
        w("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for m, r in sorted(storm.items()):
            w("| %d | %s | %s | %d | %d | %s | %s | %s |" % (
                m, fmt(r["floor_s"], 2), fmt(r["schemagate_s"], 2), r["schemagate_failures"],
                r["schemagate_rows"], fmt(r["dbmate_s"], 2),
                "–" if r["dbmate_failures"] is None else r["dbmate_failures"],
                "–" if r["dbmate_failed_containers"] is None else r["dbmate_failed_containers"]))
        w("")
    if agent:
        w("## Agent cost: `schemagate-agent check` with the schema current")
        w("")
        w("%d runs each, one after the other against the same coordinator." % agent["repeats"])
        w("")
        w("| binary | linkage | wall ms median | wall ms max | peak RSS MB median | peak RSS MB max |")
        w("| --- | --- | ---: | ---: | ---: | ---: |")
        for name, r in (("schemagate-agent", agent), ("schemagate-agent-dynamic", agent_dynamic)):
            if r:
                w("| `%s` | %s | %s | %s | %s | %s |" % (
                    name, r.get("linkage", "dynamic"), fmt(r["wall_ms_p50"]), fmt(r["wall_ms_max"]),
                    fmt(r["rss_kb_p50"] / 1024), fmt(r["rss_kb_max"] / 1024)))
        w("")
    if args.notes and os.path.exists(args.notes):
        with open(args.notes) as f:
            w(f.read().rstrip())
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
