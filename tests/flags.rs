//! Every bad flag or variable value makes the binary exit 2 with a message that names
//! it, before it starts anything (issue 13 item 8: some used to panic inside tokio,
//! be retried forever, or be accepted silently).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_skaffold-exporter");

/// Runs the exporter with `args` and `env`; its exit code and stderr (killed after
/// 10 s: a bad value accepted leaves it running).
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    run_for(args, env, Duration::from_secs(10))
}

fn run_for(args: &[&str], env: &[(&str, &str)], limit: Duration) -> (Option<i32>, String) {
    let mut child = Command::new(BIN)
        .args(args)
        // Nothing listens there: a run that got past the checks would only retry.
        .args(["--listen", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_flags_exit_2_naming_the_flag() {
    for (flag, value) in [
        ("--queue-capacity", "2305843009213693952"),
        ("--queue-capacity", "18446744073709551615"),
        ("--skaffold-http", "http://127.0.0.1:99999"),
        ("--skaffold-http", "http://127.0.0.1"),
        ("--skaffold-addr", "127.0.0.1:99999"),
        ("--upstream-timeout", "0"),
        ("--backoff-min", "0.000001ms"),
    ] {
        let (code, stderr) = run(&[flag, value], &[]);
        assert_eq!(code, Some(2), "{flag} {value}: {stderr}");
        assert!(stderr.contains(flag), "{flag} {value}: {stderr}");
        assert!(!stderr.contains("panicked"), "{flag} {value}: {stderr}");
    }
}

#[test]
fn bad_otel_variables_exit_2_naming_the_variable() {
    for (var, value) in [
        ("OTEL_METRIC_EXPORT_INTERVAL", "0"),
        ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
        ("OTEL_EXPORTER_OTLP_COMPRESSION", "zstd"),
        ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", "gzip"),
        ("OTEL_SDK_DISABLED", "maybe"),
    ] {
        let (code, stderr) = run(&["--otlp-metrics"], &[(var, value)]);
        assert_eq!(code, Some(2), "{var}={value}: {stderr}");
        assert!(stderr.contains(var), "{var}={value}: {stderr}");
    }
}

/// The checks refuse only what is wrong: the same run with good values starts (and
/// is stopped by the timeout).
#[test]
fn good_values_start() {
    let (code, stderr) = run_for(
        &[
            "--queue-capacity",
            "1048576",
            "--backoff-min",
            "10ms",
            "--skaffold-http",
            "http://127.0.0.1:9",
        ],
        &[
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ],
        Duration::from_secs(2),
    );
    // Still running when the limit killed it (`None`: ended by a signal), not exited
    // with any code, a panic's 101 included.
    assert_eq!(code, None, "{stderr}");
}
