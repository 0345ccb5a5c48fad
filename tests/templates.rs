//! Template overrides: a directory of files named like the built-in templates replaces
//! them, and a broken override is an input error naming the template.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

fn build(templates: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    let manifest =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/small-ecdsa.toml");
    Command::new(env!("CARGO_BIN_EXE_pkic"))
        .args([
            "build",
            "-m",
            manifest.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .arg("--templates")
        .arg(templates)
        .env_remove("EXTRA_SAN")
        .env_remove("SECOND_NODE")
        .output()
        .unwrap()
}

#[test]
fn override_replaces_builtin_template() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    fs::create_dir(&templates).unwrap();
    fs::write(
        templates.join("kube-apiserver.flags.j2"),
        "KUBE_APISERVER_TLS_CERT={{ tls.cert }}\nKUBE_APISERVER_CLIENT_CA={{ client_ca_file }}\n",
    )
    .unwrap();
    let out = dir.path().join("out");

    let output = build(&templates, &out);

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let flags = fs::read_to_string(out.join("flags/kube-apiserver.flags")).unwrap();
    assert_eq!(
        flags,
        "KUBE_APISERVER_TLS_CERT=/etc/kubernetes/pki/apiserver.crt\n\
         KUBE_APISERVER_CLIENT_CA=/etc/kubernetes/pki/client-bundle.crt\n"
    );
    let kubeconfig = fs::read_to_string(out.join("admin.conf")).unwrap();
    assert!(
        kubeconfig.starts_with("apiVersion: v1\nkind: Config\n"),
        "built-in template kept"
    );
}

#[test]
fn override_with_unknown_variable_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let templates = dir.path().join("templates");
    fs::create_dir(&templates).unwrap();
    fs::write(
        templates.join("kube-apiserver.flags.j2"),
        "--x={{ no_such_value }}\n",
    )
    .unwrap();
    let out = dir.path().join("out");

    let output = build(&templates, &out);

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("kube-apiserver.flags.j2"), "{stderr}");
    assert!(!out.exists(), "a failed render wrote files");
}
