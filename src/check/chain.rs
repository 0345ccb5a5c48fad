//! Issuer rules. Each certificate's issuer is found among the tree's CAs by name and
//! proven by signature, and the key identifiers explain a stale match. The other rules
//! cover path lengths, validity within the issuer's, serial numbers per issuer, CA
//! subjects, signer files, chain files and CA files.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::Context;
use super::findings::{self, Finding};
use super::x509::CertInfo;

/// Runs every issuer rule.
pub fn check(ctx: &Context) -> Vec<Finding> {
    let certs = ctx.store.unique_certs();
    // Finding an issuer verifies signatures, the costly part of a check of many nodes,
    // so the certificates are spread over all cores.
    let issuers: Vec<Option<Lookup>> = certs
        .par_iter()
        .map(|(label, cert)| (!cert.is_self_issued()).then(|| find_issuer(ctx, label, cert)))
        .collect();
    let mut found = Vec::new();
    for ((label, cert), lookup) in certs.iter().zip(issuers) {
        let Some(lookup) = lookup else {
            continue;
        };
        match lookup {
            Lookup::Found(issuer_label, issuer) => {
                validity_within(label, cert, issuer_label, issuer, &mut found);
                if !cert.is_ca() {
                    path_lengths(ctx, label, cert, &mut found);
                }
            }
            Lookup::Stale(candidates) => found.push(stale(label, cert, &candidates)),
            Lookup::NotFound => found.push(Finding::new(
                findings::ISSUER_NOT_FOUND,
                Some(label),
                format!(
                    "\"{}\" is issued by \"{}\", but no CA with that name is in the tree",
                    cert.display_name(),
                    cert.issuer
                ),
                "add the issuing CA's certificate to the tree, or reissue the certificate with a \
                 CA of the tree",
            )),
        }
    }
    serials(&certs, &mut found);
    shared_subjects(ctx, &mut found);
    signer_files(ctx, &mut found);
    chain_files(ctx, &mut found);
    trust_files(ctx, &mut found);
    found
}

enum Lookup<'a> {
    Found(&'a str, &'a CertInfo),
    /// CAs with the issuer's name whose keys did not sign the certificate.
    Stale(Vec<(&'a str, &'a CertInfo)>),
    NotFound,
}

/// Finds the CA that signed `cert`: a CA of the tree, or a certificate that follows it
/// in its own file (a chain file).
fn find_issuer<'a>(ctx: &'a Context, label: &'a str, cert: &CertInfo) -> Lookup<'a> {
    let mut candidates: Vec<(&str, &CertInfo)> = ctx.store.cas();
    candidates.extend(ctx.store.certs(label).iter().map(|c| (label, c)));
    candidates.retain(|(_, c)| c.subject_der == cert.issuer_der && c.der != cert.der);
    if candidates.is_empty() {
        return Lookup::NotFound;
    }
    match candidates.iter().find(|(_, ca)| ctx.signed(cert, ca)) {
        Some((issuer_label, issuer)) => Lookup::Found(issuer_label, issuer),
        None => Lookup::Stale(candidates),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn stale(label: &str, cert: &CertInfo, candidates: &[(&str, &CertInfo)]) -> Finding {
    let files: Vec<&str> = candidates.iter().map(|(l, _)| *l).collect();
    let identifiers = match (
        &cert.akid,
        candidates.iter().find_map(|(_, c)| c.skid.as_ref()),
    ) {
        (Some(akid), Some(skid)) if akid != skid => format!(
            "; its authorityKeyIdentifier {} differs from the CA's subjectKeyIdentifier {}",
            hex(akid),
            hex(skid)
        ),
        _ => String::new(),
    };
    Finding::new(
        findings::ISSUER_STALE,
        Some(label),
        format!(
            "\"{}\" names issuer \"{}\", which matches the CA in {}, but that CA's key did not \
             sign it: another key with the same name did (stale certificate or regenerated \
             CA){identifiers}",
            cert.display_name(),
            cert.issuer,
            files.join(", ")
        ),
        "reissue the certificate with the current CA, or restore the CA that signed it, and remove \
         stale files",
    )
}

fn validity_within(
    label: &str,
    cert: &CertInfo,
    issuer_label: &str,
    issuer: &CertInfo,
    found: &mut Vec<Finding>,
) {
    if cert.not_after <= issuer.not_after && cert.not_before >= issuer.not_before {
        return;
    }
    let format = super::expiry::format_time;
    found.push(Finding::new(
        findings::VALIDITY_OUTSIDE_ISSUER,
        Some(label),
        format!(
            "\"{}\" is valid from {} to {}, outside its issuer in {issuer_label} ({} to {}), so \
             its chain fails once the issuer expires",
            cert.display_name(),
            format(cert.not_before),
            format(cert.not_after),
            format(issuer.not_before),
            format(issuer.not_after)
        ),
        "renew the CA, or reissue the certificate with a validity inside the CA's",
    ));
}

/// Walks the chain above a leaf and checks each CA's pathLenConstraint (RFC 5280
/// section 4.2.1.9): the number of non-self-issued intermediates below a CA may not
/// exceed it.
fn path_lengths(ctx: &Context, label: &str, leaf: &CertInfo, found: &mut Vec<Finding>) {
    let mut current = leaf;
    let mut current_label = label;
    // Each step up adds one intermediate; 16 bounds a loop of cross-signed CAs.
    for intermediates in 0..16u32 {
        let Lookup::Found(issuer_label, issuer) = find_issuer(ctx, current_label, current) else {
            return;
        };
        if let Some(limit) = issuer.path_len
            && intermediates > limit
        {
            found.push(Finding::new(
                findings::PATH_LENGTH_EXCEEDED,
                Some(label),
                format!(
                    "the chain of \"{}\" has {intermediates} intermediate CAs below \"{}\" in \
                     {issuer_label}, whose path length allows {limit}",
                    leaf.display_name(),
                    issuer.display_name()
                ),
                format!(
                    "reissue \"{}\" with a larger pathlen, or sign the leaf with a CA higher up",
                    issuer.display_name()
                ),
            ));
        }
        if issuer.is_self_issued() {
            return;
        }
        current = issuer;
        current_label = issuer_label;
    }
}

/// An issuer name, its key identifier and a serial number.
type SerialKey = (Vec<u8>, Option<Vec<u8>>, Vec<u8>);

fn serials(certs: &[(&str, &CertInfo)], found: &mut Vec<Finding>) {
    let mut by_issuer: BTreeMap<SerialKey, &str> = BTreeMap::new();
    for (label, cert) in certs {
        let key = (
            cert.issuer_der.clone(),
            cert.akid.clone(),
            cert.serial.clone(),
        );
        match by_issuer.get(&key) {
            Some(first) => found.push(Finding::new(
                findings::SERIAL_DUPLICATE,
                Some(label),
                format!(
                    "\"{}\" has serial {}, which {first} also has under the same issuer \"{}\"",
                    cert.display_name(),
                    cert.serial_hex(),
                    cert.issuer
                ),
                "reissue one of them; the issuer must give every certificate its own serial",
            )),
            None => {
                by_issuer.insert(key, label);
            }
        }
    }
}

fn shared_subjects(ctx: &Context, found: &mut Vec<Finding>) {
    let cas = ctx.store.cas();
    for (i, (label, ca)) in cas.iter().enumerate() {
        let other = cas[..i].iter().find(|(_, o)| {
            o.subject_der == ca.subject_der && o.public_key.bits != ca.public_key.bits
        });
        if let Some((other_label, _)) = other {
            found.push(Finding::new(
                findings::CA_SUBJECT_SHARED,
                Some(label),
                format!(
                    "the CA \"{}\" has the same subject as the CA in {other_label} but another \
                     key, so verifiers pick one by name and fail on the other's certificates",
                    ca.subject
                ),
                "give each CA its own subject, or remove the stale CA and everything it signed",
            ));
        }
    }
}

fn signer_files(ctx: &Context, found: &mut Vec<Finding>) {
    for signer in &ctx.inventory.signers {
        let count = ctx.store.certs(&signer.cert).len();
        if count > 1 {
            found.push(Finding::new(
                findings::SIGNER_NOT_SINGLE_CERT,
                Some(&signer.cert),
                format!(
                    "{} contains {count} certificates, but {} takes exactly the one CA certificate \
                     that matches the signing key; kube-controller-manager rejects a bundle",
                    signer.cert, signer.origin
                ),
                "point the signer flag at a file with only the signing CA's certificate, and keep \
                 bundles for trust flags",
            ));
        }
    }
}

fn chain_files(ctx: &Context, found: &mut Vec<Finding>) {
    for (label, file) in &ctx.store.cert_files {
        let certs = &file.certs;
        if certs.len() < 2 || certs.iter().all(CertInfo::is_ca) {
            continue;
        }
        let ordered = !certs[0].is_ca()
            && certs
                .windows(2)
                .all(|w| w[0].issuer_der == w[1].subject_der && ctx.signed(&w[0], &w[1]));
        if !ordered {
            found.push(Finding::new(
                findings::CHAIN_OUT_OF_ORDER,
                Some(label),
                format!(
                    "{label} contains a chain of {} certificates that is not ordered leaf first with \
                     each certificate signed by the next",
                    certs.len()
                ),
                "write the leaf first, then its issuer, then that issuer's issuer, and leave the \
                 root out",
            ));
        }
    }
}

fn trust_files(ctx: &Context, found: &mut Vec<Finding>) {
    let mut seen = Vec::new();
    for trust in &ctx.inventory.trusts {
        if seen.contains(&&trust.label) {
            continue;
        }
        seen.push(&trust.label);
        for (index, cert) in ctx.store.certs(&trust.label).iter().enumerate() {
            if !cert.is_ca() {
                found.push(Finding::new(
                    findings::TRUST_FILE_NOT_CA,
                    Some(&trust.label),
                    format!(
                        "certificate {} of {}, read by {} as a CA, is \"{}\", which is not a CA",
                        index + 1,
                        trust.label,
                        trust.origin,
                        cert.display_name()
                    ),
                    "put only CA certificates in the file; tools that take its first certificate \
                     as the CA need the CA first",
                ));
            }
        }
    }
}
