//! `kiln serve` as a process: serves the embedded default GPT without a model, refuses
//! unreadable folders, serves a saved tree on a loopback port, and stops cleanly on SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, ChildStderr, Command, Stdio};

use common::{fails, run_ok};

fn http(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to kiln serve");
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// Start `kiln serve ARGS --port 0` in `dir`; returns the child, its stderr and its address.
fn spawn_serve(dir: &std::path::Path, args: &[&str]) -> (Child, BufReader<ChildStderr>, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kiln"))
        .arg("serve")
        .args(args)
        .args(["--port", "0"])
        .current_dir(dir)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut addr = None;
    let mut line = String::new();
    while err.read_line(&mut line).unwrap() > 0 {
        if let Some(rest) = line.split("listening on http://").nth(1) {
            addr = rest.split_whitespace().next().map(String::from);
            break;
        }
        line.clear();
    }
    let addr = addr.expect("kiln serve prints its address");
    (child, err, addr)
}

/// SIGTERM `child`; it must exit cleanly.
#[cfg(unix)]
fn stop(mut child: Child, mut err: BufReader<ChildStderr>) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    let mut rest = String::new();
    err.read_to_string(&mut rest).unwrap();
    assert!(exit.success(), "exit {exit:?}: {rest}");
    assert!(rest.contains("kiln serve: stopped"), "{rest}");
}

#[cfg(unix)]
#[test]
fn serve_without_a_model_serves_the_embedded_default_gpt() {
    let t = tempfile::tempdir().unwrap();
    let (child, err, addr) = spawn_serve(t.path(), &[]);
    let res = http(
        &addr,
        "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(res.contains(r#""id":"kiln-shakespeare-gpt""#), "{res}");
    let body =
        r#"{"model":"kiln-shakespeare-gpt","prompt":"ROMEO:","max_tokens":8,"temperature":0}"#;
    let res = http(
        &addr,
        &format!(
            "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(res.contains(r#""completion_tokens":8"#), "{res}");
    stop(child, err);
}

#[test]
fn serve_needs_readable_folders() {
    let t = tempfile::tempdir().unwrap();
    let err = fails(t.path(), &["serve", "--model", "absent"]);
    assert!(err.contains("cannot serve absent"), "{err}");
    run_ok(
        t.path(),
        &["fit", "tree", "--dataset", "iris", "--save", "tree"],
    );
    let err = fails(
        t.path(),
        &["serve", "--model", "tree", "--max-concurrent", "0"],
    );
    assert!(err.contains("max_concurrent"), "{err}");
}

#[cfg(unix)]
#[test]
fn serve_answers_on_loopback_and_stops_on_sigterm() {
    let t = tempfile::tempdir().unwrap();
    run_ok(
        t.path(),
        &["fit", "tree", "--dataset", "iris", "--save", "iris-tree"],
    );
    let (child, err, addr) = spawn_serve(t.path(), &["--model", "iris-tree"]);
    assert!(
        addr.starts_with("127.0.0.1:"),
        "binds to loopback by default: {addr}"
    );
    let body = r#"{"model":"iris-tree","rows":[[5.1,3.5,1.4,0.2]]}"#;
    let res = http(
        &addr,
        &format!(
            "POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(res.starts_with("HTTP/1.1 200"), "{res}");
    assert!(res.contains(r#""predictions":["setosa"]"#), "{res}");
    stop(child, err);
}
