//! Builds of many nodes: parallel issuance gives the outputs of a serial build, and
//! rebuilds leave every file they do not change untouched on disk.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Output;

use support::peers::describe_output;
use support::tree::{mode, run_pkic};

/// Nodes in the fleet manifests: more than rayon's work-splitting needs to spread the
/// leaves over every thread, few enough for a debug build to stay quick.
const NODES: usize = 40;

/// Writes the benchmark's workload for `nodes` nodes, with node number `renamed` (1 to
/// `nodes`) given another name, and returns the manifest's path.
fn write_fleet(dir: &Path, nodes: usize, renamed: Option<usize>) -> std::path::PathBuf {
    let mut text = String::from(
        "[cluster]\nname = \"kubernetes\"\nservers = [\"https://192.0.2.10:6443\"]\n\
         advertise-address = \"192.0.2.10\"\nservice-cidr = \"10.96.0.0/12\"\n\
         dns-domain = \"cluster.local\"\n\n\
         [defaults]\nkey-algorithm = \"ecdsa-p256\"\n\n\
         [ca.server-ca]\nsubject = { cn = \"Server CA\" }\n\n\
         [ca.client-ca]\nsubject = { cn = \"Client CA\" }\n\n\
         [ca.worker-ca]\nsubject = { cn = \"Worker CA\" }\n\n\
         [cert.apiserver]\nissuer = \"server-ca\"\nrole = \"apiserver\"\n\n\
         [cert.admin]\nissuer = \"client-ca\"\nrole = \"admin\"\n\
         subject = { cn = \"admin\", o = \"system:masters\" }\n\n\
         [per-node.cert.kubelet-client]\nissuer = \"worker-ca\"\nrole = \"kubelet-client\"\n\n\
         [per-node.kubeconfig.kubelet]\nuser = \"kubelet-client\"\nca = \"server-ca\"\n\
         file = \"kubelet.conf\"\n",
    );
    for i in 1..=nodes {
        let suffix = if renamed == Some(i) { "-renamed" } else { "" };
        text.push_str(&format!(
            "\n[[node]]\nname = \"node-{i:03}{suffix}\"\nips = [\"10.0.{}.{}\"]\n",
            i / 256,
            i % 256
        ));
    }
    let path = dir.join(match renamed {
        Some(_) => "renamed.toml",
        None => "pki.toml",
    });
    fs::write(&path, text).expect("failed to write the manifest");
    path
}

fn build(manifest: &Path, out: &Path, threads: &str) -> Output {
    let output = run_pkic(
        "build",
        manifest,
        out,
        &[],
        &[("RAYON_NUM_THREADS", threads)],
    );
    assert!(
        output.status.success(),
        "build with {threads} threads failed: {}",
        describe_output(&output)
    );
    output
}

/// Returns the inode number and modification time of every file under `out`, pkic's
/// own state files and backups left out.
fn file_identities(out: &Path) -> BTreeMap<String, (u64, i64, i64)> {
    walkdir::WalkDir::new(out)
        .into_iter()
        .map(|e| e.expect("failed to walk the output directory"))
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let relative = e.path().strip_prefix(out).unwrap().display().to_string();
            if relative.starts_with(".pkic") || relative.starts_with(".backup") {
                return None;
            }
            let metadata = e.metadata().expect("failed to stat an output file");
            Some((
                relative,
                (metadata.ino(), metadata.mtime(), metadata.mtime_nsec()),
            ))
        })
        .collect()
}

fn golden_dir(manifest: &Path, dir: &Path, threads: &str) -> BTreeMap<String, Vec<u8>> {
    let golden = dir.join(format!("golden-{threads}"));
    let output = support::tree::pkic_command()
        .env("RAYON_NUM_THREADS", threads)
        .arg("build")
        .arg("-m")
        .arg(manifest)
        .arg("--update-golden")
        .arg(&golden)
        .output()
        .expect("failed to run pkic");
    assert!(output.status.success(), "{}", describe_output(&output));
    support::tree::snapshot(&golden)
}

#[test]
fn parallel_build_matches_serial() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_fleet(dir.path(), NODES, None);

    let serial = golden_dir(&manifest, dir.path(), "1");
    let parallel = golden_dir(&manifest, dir.path(), "4");
    assert_eq!(serial.len(), NODES + 2, "kubeconfigs and the two listings");
    for (path, bytes) in &serial {
        assert_eq!(
            parallel.get(path),
            Some(bytes),
            "{path} differs between 1 and 4 threads"
        );
    }
    assert_eq!(serial.len(), parallel.len());

    let serial_out = dir.path().join("serial");
    let parallel_out = dir.path().join("parallel");
    build(&manifest, &serial_out, "1");
    build(&manifest, &parallel_out, "4");
    let serial_files = file_identities(&serial_out);
    let parallel_files = file_identities(&parallel_out);
    assert_eq!(
        serial_files.keys().collect::<Vec<_>>(),
        parallel_files.keys().collect::<Vec<_>>(),
        "the two builds wrote other files"
    );
    for path in serial_files.keys() {
        assert_eq!(
            mode(&serial_out.join(path)),
            mode(&parallel_out.join(path)),
            "{path} has another mode"
        );
    }
}

#[test]
fn noop_rebuild_touches_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_fleet(dir.path(), NODES, None);
    let out = dir.path().join("out");
    build(&manifest, &out, "4");
    let before = file_identities(&out);

    let again = build(&manifest, &out, "4");

    assert!(again.stdout.is_empty(), "{}", describe_output(&again));
    assert_eq!(file_identities(&out), before);
}

#[test]
fn one_node_change_touches_only_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write_fleet(dir.path(), NODES, None);
    let renamed = write_fleet(dir.path(), NODES, Some(7));
    let out = dir.path().join("out");
    build(&manifest, &out, "4");
    let before = file_identities(&out);

    let output = build(&renamed, &out, "4");

    let after = file_identities(&out);
    let node_files = [
        "kubelet.conf",
        "pki/kubelet-client.crt",
        "pki/kubelet-client.key",
    ];
    let mut written: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    written.sort();
    let expected: Vec<String> = node_files
        .iter()
        .map(|file| format!("nodes/node-007-renamed/{file}"))
        .collect();
    assert_eq!(written, expected);
    for file in node_files {
        let old = format!("nodes/node-007/{file}");
        assert!(!after.contains_key(&old), "{old} was not removed");
    }
    assert!(
        out.join(".backup").exists(),
        "no backup directory for the removed node"
    );
    let untouched: Vec<&String> = before
        .keys()
        .filter(|path| !path.starts_with("nodes/node-007/"))
        .collect();
    assert_eq!(untouched.len(), before.len() - node_files.len());
    for path in untouched {
        assert_eq!(after.get(path), before.get(path), "{path} was rewritten");
    }
}
