//! Certificate authorities and trust bundles: subjects, keys, validity, the issuer tree
//! (unknown issuers, cycles, path lengths, lifetimes that outlast a parent) and the CAs
//! that each bundle lists.

use std::collections::BTreeSet;

use super::rotation::{self, RotationFiles};
use super::{
    Bundle, Ca, Checker, Subject, check_id, check_subject, import, reference_help, values,
};

pub(super) fn check_cas(checker: &mut Checker) -> Vec<Ca> {
    let mut cas = Vec::new();
    for (id, raw) in &checker.raw.ca {
        let path = format!("ca.{id}");
        check_id(checker, &path, id);
        let imported = import::import_ca(checker, &path, raw);
        let subject = match (&imported, &raw.subject) {
            (Some(found), _) => found.subject.clone(),
            (None, Some(subject)) => check_subject(checker, &format!("{path}.subject"), subject),
            (None, None) => {
                checker
                    .error(format!("{path}.subject"), "the CA has no subject")
                    .help = Some(
                    "set `subject = { cn = \"...\" }`, or `import-cert` and `import-key`".into(),
                );
                Subject::default()
            }
        };
        let mut key = checker.key_spec(&path, raw.key_algorithm.as_ref(), raw.key_format.as_ref());
        let mut validity = checker.duration(
            &format!("{path}.validity"),
            raw.validity.as_ref(),
            checker.defaults.ca_validity,
        );
        let mut path_len = raw.path_len;
        if let Some(found) = &imported {
            key.algorithm = found.algorithm;
            validity = found.remaining;
            path_len = found.path_len;
        }
        let cert_file = checker.output(
            &format!("{path}.cert-file"),
            raw.cert_file.as_ref(),
            format!("pki/{id}.crt"),
            None,
        );
        let key_file = checker.output(
            &format!("{path}.key-file"),
            raw.key_file.as_ref(),
            format!("pki/{id}.key"),
            None,
        );
        if let Some(issuer) = &raw.issuer {
            if !checker.raw.ca.contains_key(issuer) {
                let help = reference_help(issuer, checker.raw.ca.keys());
                checker
                    .error(
                        format!("{path}.issuer"),
                        format!("CA `{id}` names issuer `{issuer}`, which is not a declared CA"),
                    )
                    .help = Some(help);
            }
        } else if raw.path_len.is_some() {
            checker.warning(
                format!("{path}.path-len"),
                "a path length on a root limits every chain below it",
            );
        }
        let rotation =
            rotation::check_rotation(checker, &path, raw.rotation.as_ref(), &format!("CA `{id}`"));
        if rotation.is_some() && imported.is_some() {
            checker
                .error(
                    format!("{path}.rotation"),
                    "an imported CA is rotated by its owner, not by pkic",
                )
                .help =
                Some("import the new CA in place of the old one, or remove `rotation`".into());
        }
        let rotation_files = RotationFiles::for_ca(&cert_file, &key_file);
        cas.push(Ca {
            id: id.clone(),
            subject,
            issuer: raw.issuer.clone(),
            path_len,
            key,
            validity,
            cert_file,
            key_file,
            imported: imported.map(|found| found.ca),
            rotation,
            rotation_files,
        });
    }
    check_ca_cycles(checker, &cas);
    check_ca_tree(checker, &cas);
    check_ca_subjects(checker, &cas);
    cas
}

/// Warns about two CAs with one subject: a verifier that picks an issuer by name may try
/// the wrong key, as it does after a CA was generated again under the same name.
fn check_ca_subjects(checker: &mut Checker, cas: &[Ca]) {
    for (i, first) in cas.iter().enumerate() {
        for second in &cas[i + 1..] {
            if first.subject != second.subject {
                continue;
            }
            let cn = second.subject.common_name.as_deref().unwrap_or("");
            checker
                .warning(
                    format!("ca.{}.subject", second.id),
                    format!(
                        "CAs `{}` and `{}` have the same subject (CN={cn:?}): a verifier that \
                         finds the issuer by name can try the wrong key and report a \
                         signature error",
                        first.id, second.id
                    ),
                )
                .help = Some("give each CA its own common name".into());
        }
    }
}

/// Rejects CAs whose chain of issuers leads back to themselves, naming the whole loop once.
fn check_ca_cycles(checker: &mut Checker, cas: &[Ca]) {
    let mut reported: BTreeSet<String> = BTreeSet::new();
    for ca in cas {
        if reported.contains(&ca.id) {
            continue;
        }
        let mut chain = vec![ca.id.clone()];
        let mut next = ca.issuer.clone();
        while let Some(id) = next {
            if id == ca.id {
                chain.push(id);
                let loop_text = chain.join(" -> ");
                checker
                    .error(
                        format!("ca.{}.issuer", ca.id),
                        format!("CA issuers form a cycle: {loop_text}"),
                    )
                    .help = Some(
                    "remove `issuer` from one of them to make it the root, or name a CA \
                     outside the loop"
                        .into(),
                );
                reported.extend(chain);
                break;
            }
            if chain.contains(&id) {
                break;
            }
            next = cas
                .iter()
                .find(|c| c.id == id)
                .and_then(|c| c.issuer.clone());
            chain.push(id);
        }
    }
}

/// Checks that each intermediate fits inside its parent's validity and path length.
fn check_ca_tree(checker: &mut Checker, cas: &[Ca]) {
    for ca in cas {
        let Some(parent) = ca
            .issuer
            .as_ref()
            .and_then(|p| cas.iter().find(|c| &c.id == p))
        else {
            continue;
        };
        if ca.validity > parent.validity {
            checker
                .error(
                    format!("ca.{}.validity", ca.id),
                    format!(
                        "CA `{}` would be valid for {}, longer than its issuer `{}` ({})",
                        ca.id,
                        values::format_duration(ca.validity),
                        parent.id,
                        values::format_duration(parent.validity)
                    ),
                )
                .help = Some(format!(
                "shorten `validity` to at most `{}`",
                values::format_duration(parent.validity)
            ));
        }
        if parent.path_len == Some(0) {
            checker
                .error(
                    format!("ca.{}.issuer", ca.id),
                    format!(
                        "issuer `{}` has path-len 0 and may not sign the CA `{}`",
                        parent.id, ca.id
                    ),
                )
                .help = Some(format!(
                "raise `ca.{}.path-len` or sign `{}` with another CA",
                parent.id, ca.id
            ));
        }
    }
}

pub(super) fn check_bundles(checker: &mut Checker, cas: &[Ca]) -> Vec<Bundle> {
    let mut bundles = Vec::new();
    for (id, raw) in &checker.raw.bundle {
        let path = format!("bundle.{id}");
        check_id(checker, &path, id);
        if checker.raw.ca.contains_key(id) {
            checker
                .error(path.clone(), format!("`{id}` is both a CA and a bundle"))
                .help = Some("give the bundle another name".into());
        }
        if raw.cas.is_empty() {
            checker.error(format!("{path}.cas"), "the bundle lists no CA");
        }
        let mut seen = BTreeSet::new();
        for (i, ca) in raw.cas.iter().enumerate() {
            if !cas.iter().any(|c| &c.id == ca) {
                let help = reference_help(ca, checker.raw.ca.keys());
                checker
                    .error(
                        format!("{path}.cas[{i}]"),
                        format!("bundle `{id}` lists `{ca}`, which is not a declared CA"),
                    )
                    .help = Some(help);
            }
            if !seen.insert(ca) {
                checker.error(
                    format!("{path}.cas[{i}]"),
                    format!("CA `{ca}` is listed twice"),
                );
            }
        }
        let file = checker.output(
            &format!("{path}.file"),
            raw.file.as_ref(),
            format!("pki/{id}.crt"),
            None,
        );
        bundles.push(Bundle {
            id: id.clone(),
            cas: raw.cas.clone(),
            file,
        });
    }
    bundles
}
