//! Turns the samples into medians, ratios and target checks; writes report.md, report.json and
//! the SVG chart.

use std::fmt::Write as _;
use std::io;
use std::path::Path;

use serde_json::{Value, json};

use crate::load::LoadResult;
use crate::servers::ServerKind;
use crate::suite::{Bench, Samples, Suite};
use crate::timers::{TimerImpl, TimerResult};

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let m = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    })
}

/// The machine the suite ran on.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 / 1024.0).round());
    json!({
        "nproc": crate::sys::online_cpus(),
        "cpu": cpu,
        "kernel": kernel,
        "memory_gib": mem_gib,
    })
}

fn fmt_num(x: Option<f64>, digits: usize) -> String {
    match x {
        Some(v) if v.is_finite() => {
            if digits == 0 && v.abs() >= 1000.0 {
                // Thousands separators for big counts.
                let s = format!("{:.0}", v);
                let (sign, digits_str) = s.split_at(if v < 0.0 { 1 } else { 0 });
                let mut out = String::new();
                for (i, ch) in digits_str.chars().enumerate() {
                    if i > 0 && (digits_str.len() - i) % 3 == 0 {
                        out.push(',');
                    }
                    out.push(ch);
                }
                format!("{sign}{out}")
            } else {
                format!("{v:.digits$}")
            }
        }
        _ => "—".into(),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}×"))
}

/// Medians of one echo benchmark, per server.
pub struct EchoStats {
    pub msgs: Option<f64>,
    pub mb: Option<f64>,
    pub p50: Option<f64>,
    pub p99: Option<f64>,
    pub server_cpu: Option<f64>,
    /// The server's CPU time per message (churn: per connection), µs.
    pub server_us: Option<f64>,
    pub gen_cpu: Option<f64>,
    pub other_cpu: Option<f64>,
    pub runs: usize,
}

/// Runs disturbed by more than this much CPU used elsewhere (% of one core) are left out of a
/// row's median when the row has quieter runs.
pub const NOISY_OTHER_CPU_PCT: f64 = 50.0;

fn echo_stats(runs: &[LoadResult]) -> EchoStats {
    let ok: Vec<&LoadResult> = runs.iter().filter(|r| r.ok).collect();
    let quiet: Vec<&LoadResult> = ok
        .iter()
        .copied()
        .filter(|r| r.other_cpu_pct.is_some_and(|o| o <= NOISY_OTHER_CPU_PCT))
        .collect();
    let ok = if quiet.is_empty() { ok } else { quiet };
    let m = |f: fn(&LoadResult) -> f64| median(ok.iter().map(|r| f(r)).collect());
    EchoStats {
        msgs: m(|r| r.msgs_per_sec),
        mb: m(|r| r.mb_per_sec),
        p50: m(|r| r.p50_us),
        p99: m(|r| r.p99_us),
        server_cpu: median(ok.iter().filter_map(|r| r.server_cpu_pct).collect()),
        server_us: median(
            ok.iter()
                .filter(|r| r.msgs_per_sec > 0.0)
                .filter_map(|r| r.server_cpu_pct.map(|c| c / 100.0 / r.msgs_per_sec * 1e6))
                .collect(),
        ),
        gen_cpu: m(|r| r.gen_cpu_pct),
        other_cpu: median(ok.iter().filter_map(|r| r.other_cpu_pct).collect()),
        runs: ok.len(),
    }
}

fn timer_stats(runs: &[TimerResult]) -> impl Fn(fn(&TimerResult) -> f64) -> Option<f64> + '_ {
    move |f| median(runs.iter().filter(|r| r.ok).map(f).collect())
}

struct Target {
    what: String,
    measured: String,
    met: Option<bool>,
}

pub struct Report {
    pub markdown: String,
    pub json: Value,
}

pub fn build(suite: &Suite, s: &Samples, command: &str) -> Report {
    let cfg = &suite.cfg;
    let servers = &cfg.servers;
    let mut md = String::new();
    let mut targets: Vec<Target> = Vec::new();
    let mach = machine();
    let stats = |bench: &str, kind: ServerKind| -> EchoStats {
        echo_stats(
            s.echo
                .get(bench)
                .and_then(|m| m.get(&kind))
                .map_or(&[][..], |v| v.as_slice()),
        )
    };
    let torsion = ServerKind::Torsion;
    let _ = writeln!(
        md,
        "Machine: {} CPUs ({}), {} GiB, Linux {}. Command: `{command}`. {} repetitions, servers \
         interleaved, medians shown; {} ms measured after {} ms warm-up per run. Server pinned to \
         CPU 0, load generator to CPU 1. Ratios are torsion ÷ rival.\n",
        mach["nproc"],
        mach["cpu"].as_str().unwrap_or("?"),
        mach["memory_gib"],
        mach["kernel"].as_str().unwrap_or("?"),
        cfg.reps,
        cfg.duration_ms,
        cfg.warmup_ms,
    );

    // Ping-pong tables.
    let mut json_echo = serde_json::Map::new();
    for bench in suite.benches() {
        let id = bench.id();
        let mut rows = serde_json::Map::new();
        for &k in servers {
            let st = stats(&id, k);
            let t = stats(&id, torsion);
            rows.insert(
                k.name().into(),
                json!({
                    "msgs_per_sec": st.msgs, "mb_per_sec": st.mb, "p50_us": st.p50,
                    "p99_us": st.p99, "server_cpu_pct": st.server_cpu,
                    "generator_cpu_pct": st.gen_cpu,
                    "server_cpu_us_per_msg": st.server_us,
                    "torsion_ratio_server_cpu_per_msg": ratio(t.server_us, st.server_us), "other_cpu_pct": st.other_cpu,
                    "runs": st.runs,
                    "torsion_ratio_msgs": ratio(t.msgs, st.msgs),
                    "torsion_ratio_mb": ratio(t.mb, st.mb),
                    "torsion_ratio_p50": ratio(t.p50, st.p50),
                    "samples": s.echo.get(&id).and_then(|m| m.get(&k)),
                }),
            );
        }
        if bench != Bench::Idle {
            json_echo.insert(id.clone(), Value::Object(rows));
        }
    }

    let pp_table = |md: &mut String, n: usize, title: &str| {
        let id = Bench::PingPong(n).id();
        let t = stats(&id, torsion);
        let _ = writeln!(md, "### {title}\n");
        let _ = writeln!(
            md,
            "| server | msgs/s | p50 µs | p99 µs | torsion ÷ it, msgs/s (higher is better) | torsion ÷ it, p50 (lower is better) | server CPU | generator CPU | other jobs' CPU | server CPU µs/msg | torsion ÷ it, CPU/msg (lower is better) |"
        );
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        for &k in servers {
            let st = stats(&id, k);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {}% | {}% | {}% | {} | {} |",
                k.name(),
                fmt_num(st.msgs, 0),
                fmt_num(st.p50, 1),
                fmt_num(st.p99, 1),
                fmt_ratio(ratio(t.msgs, st.msgs)),
                fmt_ratio(ratio(t.p50, st.p50)),
                fmt_num(st.server_cpu, 0),
                fmt_num(st.gen_cpu, 0),
                fmt_num(st.other_cpu, 0),
                fmt_num(st.server_us, 2),
                fmt_ratio(ratio(t.server_us, st.server_us)),
            );
        }
        let _ = writeln!(md);
    };
    if cfg.pingpong_conns.contains(&1) {
        pp_table(
            &mut md,
            1,
            "1. Echo ping-pong, 64-byte messages, 1 connection",
        );
    }
    if cfg.pingpong_conns.contains(&50) {
        pp_table(
            &mut md,
            50,
            "1. Echo ping-pong, 64-byte messages, 50 connections",
        );
    }
    // By connection count.
    let _ = writeln!(
        md,
        "### Echo ping-pong by connection count (msgs/s; chart: pingpong.svg)\n"
    );
    let mut head = String::from("| server |");
    let mut sep = String::from("|---|");
    for n in &cfg.pingpong_conns {
        let _ = write!(head, " {n} conn |");
        sep.push_str("---:|");
    }
    let _ = writeln!(md, "{head}\n{sep}");
    for &k in servers {
        let mut row = format!("| {} |", k.name());
        for &n in &cfg.pingpong_conns {
            let st = stats(&Bench::PingPong(n).id(), k);
            let t = stats(&Bench::PingPong(n).id(), torsion);
            let r = if k == torsion {
                String::new()
            } else {
                format!(" ({})", fmt_ratio(ratio(t.msgs, st.msgs)))
            };
            let _ = write!(row, " {}{r} |", fmt_num(st.msgs, 0));
        }
        let _ = writeln!(md, "{row}");
    }
    let _ = writeln!(md, "\n(In brackets: torsion ÷ that server.)\n");

    // Streaming.
    let sid = Bench::Stream.id();
    let t = stats(&sid, torsion);
    let _ = writeln!(
        md,
        "### 2. Echo streaming, {} connections, {} B messages, {} in flight per connection\n",
        cfg.stream_conns, cfg.stream_size, cfg.stream_inflight
    );
    let _ = writeln!(
        md,
        "| server | MB/s echoed | msgs/s | torsion ÷ it (higher is better) | server CPU | generator CPU | other jobs' CPU | server CPU µs/msg | torsion ÷ it, CPU/msg (lower is better) |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &k in servers {
        let st = stats(&sid, k);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {}% | {}% | {}% | {} | {} |",
            k.name(),
            fmt_num(st.mb, 1),
            fmt_num(st.msgs, 0),
            fmt_ratio(ratio(t.mb, st.mb)),
            fmt_num(st.server_cpu, 0),
            fmt_num(st.gen_cpu, 0),
            fmt_num(st.other_cpu, 0),
            fmt_num(st.server_us, 2),
            fmt_ratio(ratio(t.server_us, st.server_us)),
        );
    }
    let _ = writeln!(md);

    // Idle.
    let idle_med = |k: ServerKind| {
        median(
            s.idle
                .get(&k)
                .map(|v| {
                    v.iter()
                        .filter(|r| r.ok)
                        .map(|r| r.bytes_per_conn)
                        .collect()
                })
                .unwrap_or_default(),
        )
    };
    let _ = writeln!(
        md,
        "### 3. Idle connections: server RSS growth with {} idle connections\n",
        cfg.idle_conns
    );
    let _ = writeln!(
        md,
        "| server | bytes per connection | torsion ÷ it (lower is better) |"
    );
    let _ = writeln!(md, "|---|---:|---:|");
    let mut json_idle = serde_json::Map::new();
    for &k in servers {
        let v = idle_med(k);
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            k.name(),
            fmt_num(v, 0),
            fmt_ratio(ratio(idle_med(torsion), v))
        );
        json_idle.insert(
            k.name().into(),
            json!({"bytes_per_conn": v, "torsion_ratio": ratio(idle_med(torsion), v),
                   "samples": s.idle.get(&k)}),
        );
    }
    let _ = writeln!(md);

    // Churn.
    let cid = Bench::Churn.id();
    let t = stats(&cid, torsion);
    let _ = writeln!(
        md,
        "### 4. Connection churn: connect, one 64-byte echo, close ({} in parallel)\n",
        cfg.churn_parallel
    );
    let _ = writeln!(
        md,
        "| server | connections/s | torsion ÷ it (higher is better) | server CPU | generator CPU | other jobs' CPU | server CPU µs/connection | torsion ÷ it, CPU/connection (lower is better) |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|---:|");
    for &k in servers {
        let st = stats(&cid, k);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {}% | {}% | {}% | {} | {} |",
            k.name(),
            fmt_num(st.msgs, 0),
            fmt_ratio(ratio(t.msgs, st.msgs)),
            fmt_num(st.server_cpu, 0),
            fmt_num(st.gen_cpu, 0),
            fmt_num(st.other_cpu, 0),
            fmt_num(st.server_us, 2),
            fmt_ratio(ratio(t.server_us, st.server_us)),
        );
    }
    let _ = writeln!(md);

    // Timers.
    let _ = writeln!(
        md,
        "### 5. Timers: {} timers, delays uniform under {} ms, 90% cancelled, the rest fired\n",
        cfg.timers_n, cfg.timers_max_delay_ms
    );
    let _ = writeln!(
        md,
        "| implementation | schedule ns/op | cancel ns/op | schedule+cancel ns/op | torsion speed-up on schedule+cancel | fire, CPU ns/timer | 200 µs timer: late p50 / p99 / max µs |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|---:|---:|");
    let tm = |imp: TimerImpl| s.timers.get(&imp).map_or(&[][..], |v| v.as_slice());
    let torsion_sc = timer_stats(tm(TimerImpl::Torsion))(|r| r.schedule_cancel_ns);
    let mut json_timers = serde_json::Map::new();
    for imp in TimerImpl::ALL {
        let st = timer_stats(tm(imp));
        let sc = st(|r| r.schedule_cancel_ns);
        let speedup = ratio(sc, torsion_sc);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} / {} / {} |",
            imp.name(),
            fmt_num(st(|r| r.schedule_ns), 1),
            fmt_num(st(|r| r.cancel_ns), 1),
            fmt_num(sc, 1),
            if imp == TimerImpl::Torsion {
                "—".into()
            } else {
                fmt_ratio(speedup)
            },
            fmt_num(st(|r| r.fire_ns), 0),
            fmt_num(st(|r| r.late_p50_us), 1),
            fmt_num(st(|r| r.late_p99_us), 1),
            fmt_num(st(|r| r.late_max_us), 1),
        );
        json_timers.insert(
            imp.name().into(),
            json!({
                "schedule_ns": st(|r| r.schedule_ns), "cancel_ns": st(|r| r.cancel_ns),
                "schedule_cancel_ns": sc, "fire_cpu_ns": st(|r| r.fire_ns),
                "torsion_speedup_schedule_cancel": speedup,
                "late_p50_us": st(|r| r.late_p50_us), "late_p99_us": st(|r| r.late_p99_us),
                "late_max_us": st(|r| r.late_max_us), "early": st(|r| r.early as f64),
                "samples": s.timers.get(&imp),
            }),
        );
        if imp != TimerImpl::Torsion {
            targets.push(Target {
                what: format!("Timers: schedule+cancel ≥ 2× {}", imp.name()),
                measured: fmt_ratio(speedup),
                met: speedup.map(|x| x >= 2.0),
            });
        }
    }
    let _ = writeln!(md);
    let t_st = timer_stats(tm(TimerImpl::Torsion));
    let p99 = t_st(|r| r.late_p99_us);
    let early = t_st(|r| r.early as f64);
    targets.push(Target {
        what: "Timers: a 200 µs timer fires within 100 µs of its deadline (p99), never early"
            .into(),
        measured: format!(
            "p99 {} µs late, {} early",
            fmt_num(p99, 1),
            fmt_num(early, 0)
        ),
        met: p99.zip(early).map(|(p, e)| p <= 100.0 && e == 0.0),
    });

    // Parsing and Deferred chains.
    let micro_ok: Vec<&crate::micro::MicroResult> = s.micro.iter().filter(|m| m.ok).collect();
    let mut json_micro = serde_json::Map::new();
    if !micro_ok.is_empty() {
        let _ = writeln!(
            md,
            "### 6. Parsing throughput of the framing receivers ({} B payloads, fed in {} B reads) and Deferred chains\n",
            crate::micro::PAYLOAD,
            crate::micro::CHUNK
        );
        let _ = writeln!(
            md,
            "| receiver | torsion msgs/s | torsion MB/s | plain hand-written parser msgs/s | torsion ÷ plain (higher is better) |"
        );
        let _ = writeln!(md, "|---|---:|---:|---:|---:|");
        let formats: Vec<String> = micro_ok[0].parse.iter().map(|p| p.format.clone()).collect();
        for f in &formats {
            let pick = |g: fn(&crate::micro::ParseResult) -> f64| {
                median(
                    micro_ok
                        .iter()
                        .filter_map(|m| m.parse.iter().find(|p| &p.format == f).map(g))
                        .collect(),
                )
            };
            let tm = pick(|p| p.torsion_msgs_per_sec);
            let tmb = pick(|p| p.torsion_mb_per_sec);
            let pm = pick(|p| p.plain_msgs_per_sec);
            let _ = writeln!(
                md,
                "| {f} | {} | {} | {} | {} |",
                fmt_num(tm, 0),
                fmt_num(tmb, 0),
                fmt_num(pm, 0),
                fmt_ratio(ratio(tm, pm))
            );
            json_micro.insert(
                f.clone(),
                json!({"torsion_msgs_per_sec": tm, "torsion_mb_per_sec": tmb,
                       "plain_msgs_per_sec": pm, "torsion_ratio": ratio(tm, pm)}),
            );
        }
        let dn = median(
            micro_ok
                .iter()
                .filter_map(|m| m.defer.as_ref().map(|d| d.deferred_ns))
                .collect(),
        );
        let cn = median(
            micro_ok
                .iter()
                .filter_map(|m| m.defer.as_ref().map(|d| d.closures_ns))
                .collect(),
        );
        let _ = writeln!(
            md,
            "\n| chain of {} callbacks, built and fired | ns per chain | torsion ÷ plain closures (lower is better) |",
            crate::micro::CHAIN
        );
        let _ = writeln!(md, "|---|---:|---:|");
        let _ = writeln!(
            md,
            "| torsion `Deferred` | {} | {} |",
            fmt_num(dn, 0),
            fmt_ratio(ratio(dn, cn))
        );
        let _ = writeln!(
            md,
            "| plain boxed closures in a Vec | {} | — |\n",
            fmt_num(cn, 0)
        );
        json_micro.insert(
            "deferred_chain".into(),
            json!({"deferred_ns": dn, "closures_ns": cn, "torsion_ratio": ratio(dn, cn),
                   "callbacks": crate::micro::CHAIN}),
        );
    }

    // Targets.
    let pp50 = Bench::PingPong(50).id();
    let pp1 = Bench::PingPong(1).id();
    let r_c = ratio(stats(&pp50, torsion).msgs, stats(&pp50, ServerKind::C).msgs);
    let r_ct = ratio(
        stats(&pp50, torsion).msgs,
        stats(&pp50, ServerKind::TokioCt).msgs,
    );
    let r_p50 = ratio(stats(&pp1, torsion).p50, stats(&pp1, ServerKind::C).p50);
    let r_stream = ratio(stats(&sid, torsion).mb, stats(&sid, ServerKind::Mio).mb);
    let r_churn = ratio(
        stats(&cid, torsion).msgs,
        stats(&cid, ServerKind::TokioCt).msgs,
    );
    let idle_t = idle_med(torsion);
    let mut all_targets = vec![
        Target {
            what: "Ping-pong, 50 connections: ≥ 0.98× the C epoll loop".into(),
            measured: fmt_ratio(r_c),
            met: r_c.map(|x| x >= 0.98),
        },
        Target {
            what: "Ping-pong, 50 connections: ≥ 1.0× tokio current_thread".into(),
            measured: fmt_ratio(r_ct),
            met: r_ct.map(|x| x >= 1.0),
        },
        Target {
            what: "Ping-pong, 1 connection: p50 latency ≤ 1.05× the C loop's".into(),
            measured: fmt_ratio(r_p50),
            met: r_p50.map(|x| x <= 1.05),
        },
        Target {
            what: "Streaming: ≥ 1.0× the bare mio loop".into(),
            measured: fmt_ratio(r_stream),
            met: r_stream.map(|x| x >= 1.0),
        },
        Target {
            what: "Idle memory: ≤ 128 bytes per connection".into(),
            measured: format!("{} B", fmt_num(idle_t, 0)),
            met: idle_t.map(|x| x <= 128.0),
        },
        Target {
            what: "Churn: ≥ 1.0× tokio current_thread".into(),
            measured: fmt_ratio(r_churn),
            met: r_churn.map(|x| x >= 1.0),
        },
    ];
    all_targets.append(&mut targets);
    let _ = writeln!(md, "### Targets\n");
    let _ = writeln!(md, "| target | measured | met |");
    let _ = writeln!(md, "|---|---:|:---:|");
    for t in &all_targets {
        let _ = writeln!(
            md,
            "| {} | {} | {} |",
            t.what,
            t.measured,
            match t.met {
                Some(true) => "yes",
                Some(false) => "**no**",
                None => "—",
            }
        );
    }
    let _ = writeln!(md);

    // Is the generator the bottleneck? Per benchmark: its CPU against its core.
    let mut headroom: Vec<String> = Vec::new();
    let mut saturated: Vec<String> = Vec::new();
    let mut disturbed: Vec<String> = Vec::new();
    for bench in suite.benches() {
        if bench == Bench::Idle {
            continue;
        }
        let id = bench.id();
        let max_gen = servers
            .iter()
            .filter_map(|&k| stats(&id, k).gen_cpu)
            .fold(f64::NAN, f64::max);
        if max_gen.is_nan() {
            continue;
        }
        let max_other = servers
            .iter()
            .filter_map(|&k| stats(&id, k).other_cpu)
            .fold(0.0, f64::max);
        let item = format!("{id} ({max_gen:.0}%)");
        if max_other > NOISY_OTHER_CPU_PCT {
            disturbed.push(format!("{id} (others up to {max_other:.0}%)"));
        } else if max_gen < 90.0 {
            headroom.push(item);
        } else {
            saturated.push(item);
        }
    }
    let best = |id: &str| {
        servers
            .iter()
            .filter_map(|&k| stats(id, k).msgs.map(|m| (m, k)))
            .max_by(|a, b| a.0.total_cmp(&b.0))
    };
    let mut gen_note = String::from(
        "Load generator: one mio thread on its own CPU, checking every echoed byte; its CPU use \
         comes from getrusage over the measured window, the server's from /proc/PID/stat over \
         the same window (highest median across servers in brackets). ",
    );
    if !headroom.is_empty() {
        let _ = write!(
            gen_note,
            "Below 90% of its core, so the server set the pace: {}. ",
            headroom.join(", ")
        );
    }
    if !saturated.is_empty() {
        let _ = write!(
            gen_note,
            "At 90% or more: {}. There the generator does at least the server's system calls \
             per message on the other CPU, so the rate is the joint limit of the pair and says \
             only that the server kept up; the server CPU per message column is the server's \
             own cost, valid whichever side is the limit. ",
            saturated.join(", ")
        );
    }
    if !disturbed.is_empty() {
        let _ = write!(
            gen_note,
            "Other jobs took more than half a CPU during some rows of: {}; neither side had \
             its core to itself there. ",
            disturbed.join(", ")
        );
    }
    if let (Some((bm, bk)), Some(tm)) = (best(&pp50), stats(&pp50, torsion).msgs) {
        if bk != torsion && bm > tm {
            let _ = write!(
                gen_note,
                "The same generator drove {} at {} msgs/s with 50 connections, {:.2}× \
                 torsion's rate. ",
                bk.name(),
                fmt_num(Some(bm), 0),
                bm / tm
            );
        }
    }
    gen_note.push_str(
        "\"Other jobs' CPU\" is the rest of the machine's busy time (/proc/stat) in the window, \
         in % of one CPU: where it is high, other work shared the two CPUs and the row is \
         noisy. A row's median leaves out its runs with more than 50% of a CPU used elsewhere \
         when it has quieter ones (\"runs\" in report.json counts the runs kept).",
    );
    let _ = writeln!(md, "{gen_note}\n");
    if !s.failures.is_empty() {
        let _ = writeln!(md, "### Failures\n");
        for f in &s.failures {
            let _ = writeln!(md, "- {f}");
        }
        let _ = writeln!(md);
    }

    let json = json!({
        "machine": mach,
        "command": command,
        "config": cfg,
        "echo": json_echo,
        "idle": json_idle,
        "timers": json_timers,
        "micro": json_micro,
        "targets": all_targets.iter().map(|t| json!({
            "target": t.what, "measured": t.measured, "met": t.met,
        })).collect::<Vec<_>>(),
        "generator": gen_note,
        "failures": s.failures,
    });
    Report { markdown: md, json }
}

/// SVG chart of ping-pong msgs/s by connection count, one line per server.
pub fn chart(suite: &Suite, s: &Samples, path: &Path) -> io::Result<()> {
    use plotters::prelude::*;
    let cfg = &suite.cfg;
    let mut series: Vec<(ServerKind, Vec<(f64, f64)>)> = Vec::new();
    let mut ymax: f64 = 1.0;
    for &k in &cfg.servers {
        let pts: Vec<(f64, f64)> = cfg
            .pingpong_conns
            .iter()
            .filter_map(|&n| {
                let runs = s.echo.get(&Bench::PingPong(n).id())?.get(&k)?;
                let m = echo_stats(runs).msgs?;
                Some((n as f64, m))
            })
            .collect();
        for p in &pts {
            ymax = ymax.max(p.1);
        }
        series.push((k, pts));
    }
    let xmax = cfg.pingpong_conns.iter().copied().max().unwrap_or(1).max(2) as f64;
    let err = |e: &dyn std::fmt::Display| io::Error::other(e.to_string());
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption("Echo ping-pong, 64-byte messages", ("sans-serif", 22))
        .margin(20)
        .x_label_area_size(45)
        .y_label_area_size(90)
        .build_cartesian_2d((1f64..xmax * 1.1).log_scale(), 0f64..ymax * 1.15)
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("connections")
        .y_desc("messages per second")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{:.0}k", y / 1000.0))
        .draw()
        .map_err(|e| err(&e))?;
    let palette = [
        RGBColor(214, 39, 40),
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(148, 103, 189),
        RGBColor(255, 127, 14),
    ];
    for (i, (k, pts)) in series.iter().enumerate() {
        let color = palette[i % palette.len()];
        let width = if *k == ServerKind::Torsion { 3 } else { 2 };
        chart
            .draw_series(LineSeries::new(
                pts.iter().copied(),
                color.stroke_width(width),
            ))
            .map_err(|e| err(&e))?
            .label(k.name())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(width))
            });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 4, color.filled())))
            .map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}
