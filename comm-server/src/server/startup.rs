//! Start-up loading: the prompt set, the dialog scripts (checked against the prompts),
//! and the address our SDP names. Errors here stop start-up with what is wrong and where.

use super::*;

/// Loads the prompt set; a missing directory is an empty set, a broken file is an
/// error naming it, and a prompt route naming a missing prompt stops start-up.
pub(super) fn load_prompts(config: &Config) -> anyhow::Result<PromptLibrary> {
    let dir = &config.server.sounds_dir;
    let prompts = if dir.is_dir() {
        PromptLibrary::load_dir(dir)
            .with_context(|| format!("loading prompts from {}", dir.display()))?
    } else {
        tracing::warn!(dir = %dir.display(), "sounds directory not found; no prompts loaded");
        PromptLibrary::default()
    };
    for route in &config.routes {
        if let Target::Prompt(names) = route.target.get_ref() {
            for n in names {
                prompts.prompt(n).with_context(|| {
                    format!(
                        "route {:?}: prompt {n:?} is not in {}",
                        route.number.get_ref(),
                        dir.display()
                    )
                })?;
            }
        }
    }
    Ok(prompts)
}

/// Loads every dialog script in the scripts directory, checking the audio each names
/// against the prompt set. Any error stops start-up with its file:line:column, and so
/// does a `script` route naming a file that is not there.
pub(super) fn load_scripts(config: &Config, prompts: &PromptLibrary) -> anyhow::Result<Library> {
    let dir = &config.server.scripts_dir;
    let mut paths: Vec<std::path::PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "xml"))
            .collect(),
        Err(_) => Vec::new(),
    };
    paths.sort();
    let audio = |name: &str| {
        prompts
            .prompt(name.strip_suffix(".wav").unwrap_or(name))
            .is_ok()
    };
    let checked = script_engine::check_files(&paths, &audio);
    for d in &checked.diagnostics {
        tracing::warn!("{d}");
    }
    let Some(library) = checked.library else {
        let errors: Vec<String> = checked
            .diagnostics
            .iter()
            .map(ToString::to_string)
            .collect();
        anyhow::bail!(
            "dialog scripts in {} have errors:\n{}",
            dir.display(),
            errors.join("\n")
        );
    };
    for route in &config.routes {
        if let Target::Script(file) = route.target.get_ref()
            && script_for(&library, file).is_none()
        {
            anyhow::bail!(
                "route {:?}: no script {file:?} in {}",
                route.number.get_ref(),
                dir.display()
            );
        }
    }
    Ok(library)
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
