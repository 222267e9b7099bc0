//! Deferred and `spawn` costs, as ratios from one run: `cargo bench --bench defer`.
//!
//! 1. Create a `Deferred<u64>`, add four callbacks, fire it, take the result: chains per
//!    second, against the same four closures composed directly: boxed and stored first, the
//!    way a chain holds them until its result comes (the fair baseline), and, for scale, as
//!    plain inlined calls.
//! 2. The same with four closures that each capture a value (each needs its own box).
//! 3. `Reactor::spawn` of a future that awaits an already fired Deferred: spawns per second.
//!
//! When `python3` can import Twisted, `benches/defer.py` times Twisted's `Deferred` and
//! `ensureDeferred` on the same loads in the same run (CPU time of its thread), and the
//! speed-up over it is printed too.
//!
//! Each figure is the median of several runs of the same closed loop on this thread. Pass a
//! number to change the runs (default 9); `TORSION_BENCH_SCALE=0.1` shortens every loop.

mod common;

use std::hint::black_box;
use std::time::Instant;

use torsion::Reactor;
use torsion::defer::{Deferred, succeed};

fn scale() -> f64 {
    std::env::var("TORSION_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0)
}

/// Runs `f(n)` `runs` times and gives the median rate in operations per second.
fn median_rate(runs: usize, n: u64, mut f: impl FnMut(u64) -> u64) -> f64 {
    f(n / 10 + 1); // warm up caches and the allocator
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            black_box(f(n));
            n as f64 / t.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

fn deferred_chain(n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        let d = Deferred::<u64>::new();
        d.add_callback(|x| x + 1)
            .add_callback(|x| x.wrapping_mul(3))
            .add_callback(|x| x ^ 0x55)
            .add_callback(|x| x.wrapping_sub(7));
        let _ = d.callback(black_box(i));
        if let Some(Ok(v)) = d.take_result() {
            sum = sum.wrapping_add(v);
        }
    }
    sum
}

type Step = Box<dyn FnOnce(u64) -> u64>;

fn boxed_closures(n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        let steps: Vec<Step> = vec![
            Box::new(|x| x + 1),
            Box::new(|x: u64| x.wrapping_mul(3)),
            Box::new(|x| x ^ 0x55),
            Box::new(|x: u64| x.wrapping_sub(7)),
        ];
        let mut v = black_box(i);
        for f in black_box(steps) {
            v = f(v);
        }
        sum = sum.wrapping_add(v);
    }
    sum
}

fn inlined_calls(n: u64) -> u64 {
    let f1 = |x: u64| x + 1;
    let f2 = |x: u64| x.wrapping_mul(3);
    let f3 = |x: u64| x ^ 0x55;
    let f4 = |x: u64| x.wrapping_sub(7);
    let mut sum = 0u64;
    for i in 0..n {
        sum = sum.wrapping_add(f4(f3(f2(f1(black_box(i))))));
    }
    sum
}

fn deferred_chain_capturing(n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        let (a, b, c, e) = black_box((1u64, 3u64, 0x55u64, 7u64));
        let d = Deferred::<u64>::new();
        d.add_callback(move |x| x + a)
            .add_callback(move |x| x.wrapping_mul(b))
            .add_callback(move |x| x ^ c)
            .add_callback(move |x| x.wrapping_sub(e));
        let _ = d.callback(black_box(i));
        if let Some(Ok(v)) = d.take_result() {
            sum = sum.wrapping_add(v);
        }
    }
    sum
}

fn boxed_closures_capturing(n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        let (a, b, c, e) = black_box((1u64, 3u64, 0x55u64, 7u64));
        let steps: Vec<Step> = vec![
            Box::new(move |x| x + a),
            Box::new(move |x: u64| x.wrapping_mul(b)),
            Box::new(move |x| x ^ c),
            Box::new(move |x: u64| x.wrapping_sub(e)),
        ];
        let mut v = black_box(i);
        for f in black_box(steps) {
            v = f(v);
        }
        sum = sum.wrapping_add(v);
    }
    sum
}

fn spawn_fired(reactor: &Reactor, n: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..n {
        let d = reactor.spawn(async move {
            let v = succeed(black_box(i)).await?;
            Ok(v + 1)
        });
        if let Some(Ok(v)) = d.take_result() {
            sum = sum.wrapping_add(v);
        }
    }
    sum
}

/// Twisted's rates from `benches/defer.py`: (chains/s, spawns/s, sum of 1000 chains), or why
/// there are none.
fn twisted(runs: usize, n: u64) -> Result<(f64, f64, u64), String> {
    let text = common::python(
        "defer.py",
        &[
            runs.min(5).to_string(),
            // Twisted runs some 70 times slower: a smaller loop takes about as long.
            (n / 20).max(1000).to_string(),
        ],
    )?;
    let field = |name: &str| -> Result<f64, String> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .ok_or_else(|| format!("no {name} line in {text:?}"))
    };
    Ok((field("chain ")?, field("spawn ")?, field("check ")? as u64))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args.iter().find_map(|a| a.parse().ok()).unwrap_or(9).max(1);
    // `--profile-chain` / `--profile-spawn`: run only that loop, for a profiler.
    if args.iter().any(|a| a == "--profile-chain") {
        black_box(deferred_chain((20_000_000.0 * scale()) as u64));
        return;
    }
    if args.iter().any(|a| a == "--profile-spawn") {
        let reactor = Reactor::new().expect("a reactor");
        black_box(spawn_fired(&reactor, (20_000_000.0 * scale()) as u64));
        return;
    }
    let n = ((2_000_000.0 * scale()) as u64).max(1000);
    assert_eq!(deferred_chain(1000), boxed_closures(1000));
    assert_eq!(deferred_chain(1000), inlined_calls(1000));
    assert_eq!(
        deferred_chain_capturing(1000),
        boxed_closures_capturing(1000)
    );

    let chain = median_rate(runs, n, deferred_chain);
    let boxed = median_rate(runs, n, boxed_closures);
    let inlined = median_rate(runs, n * 10, inlined_calls);
    let chain_c = median_rate(runs, n, deferred_chain_capturing);
    let boxed_c = median_rate(runs, n, boxed_closures_capturing);

    let reactor = Reactor::builder()
        .install_signal_handlers(false)
        .build()
        .expect("a reactor");
    let expect: u64 = (0..1000u64).map(|i| i + 1).sum();
    assert_eq!(spawn_fired(&reactor, 1000), expect);
    let spawn = median_rate(runs, n, |n| spawn_fired(&reactor, n));

    let twisted = twisted(runs, n);

    let m = |r: f64| r / 1e6;
    println!("defer benchmark: median of {runs} runs, one thread");
    match &twisted {
        Ok((_, _, check)) => {
            assert_eq!(
                *check,
                deferred_chain(1000),
                "Twisted computed the same chains"
            );
            println!("Twisted: benches/defer.py, same loads, same run");
        }
        Err(why) => println!("Twisted: not measured ({why})"),
    }
    println!(
        "Deferred, 4 callbacks, fire:           {:8.2} M chains/s",
        m(chain)
    );
    println!(
        "  4 boxed closures composed:           {:8.2} M chains/s   Deferred/boxed time ratio {:.2}x",
        m(boxed),
        boxed / chain
    );
    println!(
        "  4 closures inlined:                  {:8.2} M chains/s   Deferred/inlined time ratio {:.1}x",
        m(inlined),
        inlined / chain
    );
    println!(
        "Deferred, 4 capturing callbacks, fire: {:8.2} M chains/s",
        m(chain_c)
    );
    println!(
        "  4 capturing boxed closures:          {:8.2} M chains/s   Deferred/boxed time ratio {:.2}x",
        m(boxed_c),
        boxed_c / chain_c
    );
    println!(
        "spawn + await of a fired Deferred:     {:8.2} M spawns/s",
        m(spawn)
    );
    if let Ok((chains, spawns, _)) = twisted {
        println!(
            "  Twisted Deferred, 4 callbacks, fire: {:8.2} M chains/s   torsion is {:.0}x faster",
            m(chains),
            chain / chains
        );
        println!(
            "  Twisted ensureDeferred + await:      {:8.2} M spawns/s   torsion is {:.0}x faster",
            m(spawns),
            spawn / spawns
        );
    }
}
