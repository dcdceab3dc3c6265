//! Parses a generated Dockerfile of 10,000 instructions through both
//! parsing stages.

use std::fmt::Write;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// Builds a Dockerfile with `count` instructions that mixes every common
/// form: flags, exec and shell form, continuations, ENV and LABEL pairs,
/// heredocs and several stages.
fn generate(count: usize) -> String {
    let mut text = String::from("# syntax=docker/dockerfile:1\nARG BASE=debian:bookworm\n");
    let mut written = 1;
    let mut stage = 0;
    while written < count {
        let _ = writeln!(text, "FROM ${{BASE}} AS stage{stage}");
        written += 1;
        for i in 0..99 {
            if written >= count {
                break;
            }
            match i % 9 {
                0 => {
                    let _ = writeln!(
                        text,
                        "RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \\\n    apt-get update && \\\n    apt-get install -y pkg{i}"
                    );
                }
                1 => {
                    let _ = writeln!(text, "COPY --chown=1000:1000 --chmod=644 src/{i} /app/{i}/");
                }
                2 => {
                    let _ = writeln!(text, "ENV KEY{i}=\"value {i}\" OTHER{i}=plain");
                }
                3 => {
                    let _ = writeln!(text, "LABEL org.example.n{i}=\"{i}\"");
                }
                4 => {
                    let _ = writeln!(text, "CMD [\"/app/run\", \"--port\", \"{i}\"]");
                }
                5 => {
                    let _ = writeln!(text, "RUN <<EOF\necho step {i}\ntouch /tmp/{i}\nEOF");
                }
                6 => {
                    let _ = writeln!(text, "WORKDIR /app/{i}");
                }
                7 => {
                    let _ = writeln!(text, "# a comment\nARG VERSION{i}=1.{i}");
                }
                _ => {
                    let _ = writeln!(text, "EXPOSE {}/tcp", 8000 + i);
                }
            }
            written += 1;
        }
        stage += 1;
    }
    text
}

fn bench_parse(c: &mut Criterion) {
    let text = generate(10_000);
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("syntax_10k_instructions", |b| {
        b.iter(|| forge_parser::syntax::parse(black_box(&text)))
    });
    group.bench_function("typed_10k_instructions", |b| {
        b.iter(|| forge_parser::instructions::parse(black_box(&text)))
    });
    group.finish();
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
