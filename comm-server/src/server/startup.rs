//! Start-up loading: the prompt set and dialog scripts (through the config's own
//! reference check) and the address our SDP names. Errors stop start-up.

use super::*;

/// Loads the prompt set and the dialog scripts through the same check as
/// `comm-server check-config` (scripts checked against the prompts, prompt and script
/// routes checked against both), so that command says exactly whether `serve` starts.
/// Any error stops start-up, each with its file and line.
pub(super) fn load_references(config: &Config) -> anyhow::Result<(PromptLibrary, Library)> {
    let refs = config.check_references(std::path::Path::new(""));
    for w in &refs.warnings {
        tracing::warn!("{w}");
    }
    if !refs.errors.is_empty() {
        let errors: Vec<String> = refs.errors.iter().map(ToString::to_string).collect();
        anyhow::bail!(
            "the configuration's references have errors:\n{}",
            errors.join("\n")
        );
    }
    let scripts = match refs.scripts {
        Some(library) => library,
        None => Library::new(Vec::new())?, // an empty scripts directory
    };
    Ok((refs.prompts, scripts))
}

/// The id of the script loaded from `file` (a name in the scripts directory; `.xml`
/// may be left out, as `check-config` allows).
pub(super) fn script_for(library: &Library, file: &str) -> Option<String> {
    let wanted = if file.ends_with(".xml") {
        file.to_string()
    } else {
        format!("{file}.xml")
    };
    library
        .scripts()
        .find(|s| {
            std::path::Path::new(s.file())
                .file_name()
                .is_some_and(|n| *n == *wanted)
        })
        .map(|s| s.id().to_string())
}

/// The address our SDP names: configured, else the SIP public host when it is an IP,
/// else the media bind address, else the SIP listen IP (127.0.0.1 for unspecified).
pub(super) fn media_ip(cfg: &Config, sip: Option<SocketAddr>) -> std::net::IpAddr {
    if let Some(ip) = cfg.media.public_ip {
        return ip;
    }
    if let Some(ip) = cfg.sip.public_host.as_ref().and_then(|h| h.parse().ok()) {
        return ip;
    }
    if !cfg.media.bind.is_unspecified() {
        return cfg.media.bind;
    }
    match sip.map(|a| a.ip()) {
        Some(ip) if !ip.is_unspecified() => ip,
        _ => std::net::IpAddr::from([127, 0, 0, 1]),
    }
}
