//! Compiles the C epoll echo loop that the suite measures torsion against.

fn main() {
    println!("cargo:rerun-if-changed=c/echo.c");
    cc::Build::new()
        .file("c/echo.c")
        .opt_level(2)
        .warnings(true)
        .compile("torsion_bench_c_echo");
}
