//! `comm-server`: the command line. Kept short; the server is `comm_server::server::App`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use comm_server::acd::sim::{self, Distribution, ErlangC, SimParams};
use comm_server::config::{self, Config, DEMO_CONFIG, HumanDuration};
use comm_server::media::prompt::PromptLibrary;
use comm_server::server::{App, Listeners};
use script_engine::{AnyAudio, AudioFiles};

#[derive(Parser)]
#[command(
    name = "comm-server",
    version,
    about = "Call-center communication server"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (on the embedded demo config when no --config is given).
    Serve {
        #[command(flatten)]
        opts: ServeOpts,
    },
    /// Check a config file and what it references; errors name file and line.
    ///
    /// The sounds and scripts directories must exist, every prompt and script in them
    /// load, script routes name a voice script there and prompt routes name prompts
    /// there. Relative directories in the config are resolved against the working
    /// directory, as `serve` resolves them.
    CheckConfig {
        /// The config file; default: the embedded demo config.
        config: Option<PathBuf>,
    },
    /// Check dialog scripts together (they may call each other).
    ///
    /// Findings print as `file:line:column: error|warning: message`.
    CheckScript(CheckScriptOpts),
    /// Simulate a call center with the real ACD core (discrete events, virtual time)
    /// and print service level, speed of answer, abandonment, occupancy and EWT error.
    Simulate(SimulateOpts),
    /// Simulate a working day of an outbound campaign with the real pacer and print
    /// agent occupancy and abandonment for progressive and predictive dialling.
    SimulateCampaign(SimulateCampaignOpts),
    /// Print call (per queue) or agent figures for a period from the ACD event log.
    ///
    /// Reads the database `serve` writes (`--config`, `--data-dir` as for `serve`).
    /// Periods are UTC and half-open: `--from 2026-11-01 --to 2026-11-02` is that day.
    /// Definitions (service level, AHT...) are in `comm_server::reports`.
    Report(ReportOpts),
    /// Print an argon2 hash of a password read from standard input (one line), for
    /// `password-hash` in `[[agent]]` and `[[supervisor]]`.
    HashPassword,
    /// Import records into the database (the server may be running: SQLite allows
    /// one writer at a time and the import waits for its turn).
    Import {
        #[command(subcommand)]
        what: ImportCommand,
    },
    /// Start, pause or stop an outbound campaign. Writes the campaign's state to the
    /// database; a running server picks it up within a second.
    Campaign(CampaignOpts),
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CampaignAction {
    /// Start dialling (or resume after pause).
    Start,
    /// Stop placing new calls; calls in progress finish.
    Pause,
    /// Like pause, meant to be final.
    Stop,
}

#[derive(clap::Args)]
struct CampaignOpts {
    #[arg(value_enum)]
    action: CampaignAction,
    /// A `[[campaign]]` name.
    name: String,
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (SQLite database), as for `serve`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct SimulateCampaignOpts {
    /// Agents working the campaign all day (a comma-separated list runs each).
    #[arg(long, value_delimiter = ',', default_values_t = vec![5, 10, 20, 50])]
    agents: Vec<u32>,
    /// Chance a dial is answered by a person.
    #[arg(long, default_value_t = 0.30)]
    answer_rate: f64,
    /// Chance a dial is answered by a machine (detected and dropped).
    #[arg(long, default_value_t = 0.15)]
    machine_rate: f64,
    /// Mean talk time (exponential).
    #[arg(long, default_value = "150s")]
    talk: HumanDuration,
    /// Wrap-up after each call.
    #[arg(long, default_value = "15s")]
    wrap_up: HumanDuration,
    /// Length of the day.
    #[arg(long, default_value = "8h")]
    duration: HumanDuration,
    /// Abandonment cap (abandoned / answered by a person).
    #[arg(long, default_value_t = 0.03)]
    abandon_cap: f64,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ReportKind {
    /// Per queue: offered, answered, abandoned, overflowed, transferred, ASA, service
    /// level, AHT.
    Calls,
    /// Per agent: answered, AHT, time logged in, available, on break, on a call, wrap-up.
    Agents,
    /// Per outbound campaign: attempts, contacts reached, outcomes, abandonment rate,
    /// dispositions.
    Campaigns,
    /// Per dialog script on calls: completed, abandoned and where, outcomes, time in
    /// the script.
    Ivr,
    /// Per dialog script and path (the steps callers answered, in order).
    IvrPaths,
    /// Per mailbox: messages left, heard, handled by agents, time to handle.
    Voicemail,
}

#[derive(clap::Args)]
struct ReportOpts {
    #[arg(value_enum)]
    kind: ReportKind,
    /// Start, UTC: YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS] (included).
    #[arg(long)]
    from: String,
    /// End, UTC, same forms (excluded).
    #[arg(long)]
    to: String,
    /// Only this queue (calls report).
    #[arg(long)]
    queue: Option<String>,
    /// Only this agent (agents report).
    #[arg(long)]
    agent: Option<String>,
    /// Only this campaign (campaigns report; default every `[[campaign]]`).
    #[arg(long)]
    campaign: Option<String>,
    /// Only this mailbox (voicemail report).
    #[arg(long)]
    mailbox: Option<String>,
    /// table, csv or json.
    #[arg(long, default_value = "table")]
    format: String,
    /// Answered within this counts toward the service level.
    #[arg(long, default_value = "20s")]
    service_level: HumanDuration,
    /// Abandoned within this counts as a short abandon.
    #[arg(long, default_value = "5s")]
    short_abandon: HumanDuration,
    /// Split the period into intervals of this length (e.g. 1h, 1d): each row then
    /// starts with its interval's start. At most 1,000 intervals.
    #[arg(long)]
    interval: Option<HumanDuration>,
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory holding comm-server.db (overrides the config).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ImportCommand {
    /// Customers from a CSV file whose header row names the columns: name (required),
    /// phone (several separated by ';'), account, email, external_ref; other columns
    /// become attributes. Rows with the same phone or external_ref are merged, with
    /// each other and with customers already stored. Any bad row: every problem is
    /// listed by row number and nothing is written.
    Customers(ImportCustomersOpts),
    /// Contacts of a `[[campaign]]` from a CSV file: phone (required), name, time_zone
    /// (IANA, e.g. Europe/London; empty: the campaign's); other columns become
    /// attributes. Rows with the same number are merged; contacts are linked to the
    /// customer with their number (created when unknown). Any bad row: every problem
    /// is listed by row number and nothing is written.
    Contacts(ImportContactsOpts),
}

#[derive(clap::Args)]
struct ImportContactsOpts {
    /// The `[[campaign]]` the contacts belong to.
    #[arg(long)]
    campaign: String,
    /// The CSV file (UTF-8, comma-separated, header row first).
    file: PathBuf,
    /// Config file (for [storage], [customers] and [[campaign]]).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (SQLite database), as for `serve`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct ImportCustomersOpts {
    /// The CSV file (UTF-8, comma-separated, header row first).
    file: PathBuf,
    /// Config file (for [storage] and [customers]); default: the embedded demo config.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory (SQLite database), as for `serve`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(clap::Args)]
struct CheckScriptOpts {
    /// Script files, checked as one set.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Sound set the audio files are looked up in (`general/welcome.wav` is
    /// DIR/general/welcome.wav, which must be a WAV file the server can play).
    #[arg(long, value_name = "DIR", default_value = config::DEFAULT_SOUNDS_DIR, conflicts_with = "any_audio")]
    sounds: PathBuf,
    /// Accept any audio file name (scripts written before their recordings).
    #[arg(long)]
    any_audio: bool,
}

#[derive(clap::Args)]
struct SimulateOpts {
    /// Agents, all logged in and serving every queue.
    #[arg(long, default_value_t = 25)]
    agents: u32,
    /// Queues; callers pick one at random.
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// Poisson arrival rate over all queues.
    #[arg(long, default_value_t = 650.0)]
    calls_per_hour: f64,
    /// Mean handle (talk) time, exponential unless --handle-sd is given (log-normal).
    #[arg(long, default_value = "120s")]
    aht: HumanDuration,
    /// Standard deviation of the handle time (log-normal).
    #[arg(long)]
    handle_sd: Option<HumanDuration>,
    /// Mean caller patience (exponential); callers never hang up when absent.
    #[arg(long)]
    patience: Option<HumanDuration>,
    /// Wrap-up after each call.
    #[arg(long, default_value = "0s")]
    wrap_up: HumanDuration,
    /// Simulated length of the day.
    #[arg(long, default_value = "8h")]
    duration: HumanDuration,
    /// Service level threshold.
    #[arg(long, default_value = "20s")]
    service_level: HumanDuration,
    /// Routing strategy for every queue.
    #[arg(long, default_value = "longest-idle")]
    strategy: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(clap::Args)]
struct ServeOpts {
    #[arg(long)]
    config: Option<PathBuf>,
    /// SIP listen address for both UDP and TCP (overrides the config).
    #[arg(long)]
    sip: Option<SocketAddr>,
    /// SIP UDP listen address only.
    #[arg(long)]
    sip_udp: Option<SocketAddr>,
    /// SIP TCP listen address only.
    #[arg(long)]
    sip_tcp: Option<SocketAddr>,
    /// HTTP listen address for the web self-service page and API (overrides the config).
    #[arg(long)]
    http: Option<SocketAddr>,
    /// gRPC listen address for agent desktops and supervisors (overrides the config).
    #[arg(long)]
    grpc: Option<SocketAddr>,
    /// Data directory (SQLite database, recordings).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

fn load(path: Option<&PathBuf>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(p) => Config::load(p)?,
        None => Config::parse(DEMO_CONFIG, "deploy/comm-server.toml (embedded)")?,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { opts } => serve(opts),
        Command::CheckConfig { config } => check_config(config.as_ref()),
        Command::CheckScript(opts) => check_script(&opts),
        Command::Simulate(opts) => simulate(opts),
        Command::SimulateCampaign(opts) => simulate_campaign(opts),
        Command::Report(opts) => report(opts),
        Command::HashPassword => hash_password(),
        Command::Import {
            what: ImportCommand::Customers(opts),
        } => import_customers(opts),
        Command::Import {
            what: ImportCommand::Contacts(opts),
        } => import_contacts(opts),
        Command::Campaign(opts) => campaign(opts),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn hash_password() -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(
        !password.is_empty(),
        "the password on standard input is empty"
    );
    println!("{}", agent_gateway::password::hash(password)?);
    Ok(())
}

fn check_config(path: Option<&PathBuf>) -> anyhow::Result<()> {
    let config = load(path)?;
    let refs = config.check_references(Path::new(""));
    for w in &refs.warnings {
        println!("{w}");
    }
    for e in &refs.errors {
        println!("{e}");
    }
    let scripts = refs.scripts.as_ref().map_or(0, |l| l.scripts().count());
    println!(
        "{} route(s), {} prompt(s), {scripts} script(s): {} error(s), {} warning(s)",
        config.routes.len(),
        refs.prompts.len(),
        refs.errors.len(),
        refs.warnings.len()
    );
    anyhow::ensure!(refs.errors.is_empty(), "the config does not check");
    println!("config OK");
    Ok(())
}

fn check_script(o: &CheckScriptOpts) -> anyhow::Result<()> {
    let prompts = if o.any_audio {
        PromptLibrary::default()
    } else {
        PromptLibrary::load_dir(&o.sounds).with_context(|| {
            format!(
                "--sounds {}: cannot load the sound set (--any-audio skips audio checks)",
                o.sounds.display()
            )
        })?
    };
    let in_sounds = config::prompt_audio(&prompts);
    let audio: &dyn AudioFiles = if o.any_audio { &AnyAudio } else { &in_sounds };
    let checked = script_engine::check_files(&o.files, audio);
    for d in &checked.diagnostics {
        println!("{d}");
    }
    println!(
        "{} file(s): {} error(s), {} warning(s)",
        o.files.len(),
        checked.error_count(),
        checked.warning_count()
    );
    anyhow::ensure!(checked.error_count() == 0, "the scripts do not check");
    Ok(())
}

fn simulate_campaign(o: SimulateCampaignOpts) -> anyhow::Result<()> {
    use comm_server::campaigns::sim::CampaignSim;
    use comm_server::campaigns::{DialMode, PredictiveParams};
    anyhow::ensure!(
        (0.0..=1.0).contains(&o.answer_rate)
            && (0.0..=1.0).contains(&o.machine_rate)
            && o.answer_rate + o.machine_rate <= 1.0,
        "--answer-rate and --machine-rate are chances between 0 and 1 that add up to at most 1"
    );
    anyhow::ensure!(
        o.abandon_cap > 0.0 && o.abandon_cap < 1.0,
        "--abandon-cap is a fraction such as 0.03"
    );
    println!(
        "{:>6}  {:<11}  {:>6}  {:>8}  {:>9}  {:>9}  {:>10}  {:>9}  {:>9}  {:>9}",
        "agents",
        "mode",
        "dials",
        "answered",
        "connected",
        "abandoned",
        "abandon %",
        "worst 1h %",
        "occupancy",
        "idle (s)"
    );
    for &agents in &o.agents {
        for (name, mode) in [
            ("progressive", DialMode::Progressive),
            (
                "predictive",
                DialMode::Predictive(PredictiveParams {
                    abandon_cap: o.abandon_cap,
                    ..PredictiveParams::default()
                }),
            ),
        ] {
            let r = CampaignSim {
                agents,
                duration: o.duration.0,
                mode,
                p_human: o.answer_rate,
                p_machine: o.machine_rate,
                talk: Distribution::Exponential(o.talk.0),
                wrap_up: o.wrap_up.0,
                seed: o.seed,
                ..CampaignSim::default()
            }
            .run();
            println!(
                "{agents:>6}  {name:<11}  {:>6}  {:>8}  {:>9}  {:>9}  {:>9.2}%  {:>9.2}%  {:>8.1}%  {:>9.0}",
                r.dials,
                r.answered,
                r.connected,
                r.abandoned,
                r.abandon_rate * 100.0,
                r.worst_window_rate * 100.0,
                r.occupancy * 100.0,
                r.mean_idle.as_secs_f64()
            );
        }
    }
    Ok(())
}

fn simulate(o: SimulateOpts) -> anyhow::Result<()> {
    let strategy = o
        .strategy
        .parse()
        .map_err(|e| anyhow::anyhow!("--strategy: {e}"))?;
    let params = SimParams {
        agents: o.agents,
        queues: o.queues,
        calls_per_hour: o.calls_per_hour,
        handle_time: match o.handle_sd {
            Some(sd) => Distribution::LogNormal {
                mean: o.aht.0,
                sd: sd.0,
            },
            None => Distribution::Exponential(o.aht.0),
        },
        patience: o.patience.map(|p| Distribution::Exponential(p.0)),
        wrap_up: o.wrap_up.0,
        duration: o.duration.0,
        service_level_threshold: o.service_level.0,
        strategy,
        seed: o.seed,
        ..SimParams::default()
    };
    let report = sim::run(&params, comm_server::time::base_instant());
    println!("{report}");
    if o.queues == 1 && o.patience.is_none() && o.handle_sd.is_none() {
        let e = ErlangC::new(o.agents, o.calls_per_hour, o.aht.0 + o.wrap_up.0);
        if e.is_stable() {
            println!(
                "Erlang C for comparison: P(wait) {:.1}%, ASA {:.1} s, service level {:.1}%, occupancy {:.1}%",
                e.probability_of_wait() * 100.0,
                e.average_speed_of_answer().map_or(0.0, |d| d.as_secs_f64()),
                e.service_level(o.service_level.0) * 100.0,
                e.occupancy() * 100.0
            );
        } else {
            println!("Erlang C: offered load exceeds the agents; the queue grows without bound");
        }
    }
    Ok(())
}

fn report(o: ReportOpts) -> anyhow::Result<()> {
    use comm_server::reports::{self, Period, Settings, format};
    let format: format::Format = o
        .format
        .parse()
        .map_err(|e| anyhow::anyhow!("--format: {e}"))?;
    let from_ms = reports::parse_utc(&o.from).context("--from")?;
    let to_ms = reports::parse_utc(&o.to).context("--to")?;
    anyhow::ensure!(
        from_ms < to_ms,
        "--from {} is not before --to {}",
        o.from,
        o.to
    );
    let mut config = load(o.config.as_ref())?;
    if let Some(d) = o.data_dir {
        config.server.data_dir = d;
    }
    if config.storage.url.is_none() {
        let db = config.server.data_dir.join("comm-server.db");
        anyhow::ensure!(
            db.is_file(),
            "no database at {} (see --data-dir)",
            db.display()
        );
    }
    let url = comm_server::server::database_url(&config);
    let settings = Settings {
        service_level: o.service_level.0,
        short_abandon: o.short_abandon.0,
    };
    let period = Period { from_ms, to_ms };
    use comm_server::server::reports::{Kind, ReportQuery, compute};
    let query = ReportQuery {
        kind: match o.kind {
            ReportKind::Calls => Kind::Calls,
            ReportKind::Agents => Kind::Agents,
            ReportKind::Campaigns => Kind::Campaigns,
            ReportKind::Ivr => Kind::Ivr,
            ReportKind::IvrPaths => Kind::IvrPaths,
            ReportKind::Voicemail => Kind::Voicemail,
        },
        period,
        settings,
        only: match o.kind {
            ReportKind::Calls => o.queue,
            ReportKind::Agents => o.agent,
            ReportKind::Campaigns => o.campaign,
            ReportKind::Voicemail => o.mailbox,
            ReportKind::Ivr | ReportKind::IvrPaths => None,
        },
        campaigns: config
            .campaigns
            .iter()
            .map(|c| c.name.get_ref().clone())
            .collect(),
        interval: o.interval.map(|d| d.0),
    };
    let rt = tokio::runtime::Runtime::new()?;
    let (header, rows) = rt.block_on(async {
        let store = comm_server::store::Store::open(&url).await?;
        let table = compute(&store, &query).await;
        store.close().await;
        anyhow::Ok(table?)
    })?;
    print!("{}", format::render(format, &header, &rows));
    Ok(())
}

fn import_customers(opts: ImportCustomersOpts) -> anyhow::Result<()> {
    use comm_server::customer_csv;
    use comm_server::time::{Clock, SystemClock};

    let mut config = load(opts.config.as_ref())?;
    if let Some(d) = opts.data_dir {
        config.server.data_dir = d;
    }
    let plan = config
        .customers
        .dial_plan()
        .map_err(|e| anyhow::anyhow!("[customers]: {e}"))?;
    let path = opts.file.display().to_string();
    let file = std::fs::File::open(&opts.file).with_context(|| format!("cannot open {path}"))?;
    let parsed = customer_csv::parse(std::io::BufReader::new(file), &path, &plan)?;
    let rt = tokio::runtime::Runtime::new()?;
    let summary = rt.block_on(async {
        let store = comm_server::server::open_store(&config).await?;
        let bar = indicatif::ProgressBar::new(parsed.customers.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} customers {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let result =
            customer_csv::import(&store, &parsed, &path, SystemClock.unix_ms(), &mut |n| {
                bar.set_position(n as u64)
            })
            .await;
        bar.finish_and_clear();
        store.close().await;
        anyhow::Ok(result?)
    })?;
    println!(
        "{path}: {} row(s), {} customer(s): {} created, {} updated",
        parsed.row_count,
        parsed.customers.len(),
        summary.created,
        summary.updated
    );
    Ok(())
}

/// The config, with `--data-dir` applied, and the checked campaign called `name`.
fn campaign_config(
    config: Option<&PathBuf>,
    data_dir: Option<PathBuf>,
    name: &str,
) -> anyhow::Result<Config> {
    let mut config = load(config)?;
    if let Some(d) = data_dir {
        config.server.data_dir = d;
    }
    let campaigns = config
        .checked_campaigns()
        .map_err(|e| anyhow::anyhow!("{}: {}", e.key, e.message))?;
    if !campaigns.iter().any(|c| c.name == name) {
        let known: Vec<&str> = campaigns.iter().map(|c| c.name.as_str()).collect();
        anyhow::bail!("no [[campaign]] named {name:?} in the config (known: {known:?})");
    }
    Ok(config)
}

fn import_contacts(opts: ImportContactsOpts) -> anyhow::Result<()> {
    use comm_server::contact_csv;
    use comm_server::time::{Clock, SystemClock};

    let config = campaign_config(opts.config.as_ref(), opts.data_dir, &opts.campaign)?;
    let plan = config
        .customers
        .dial_plan()
        .map_err(|e| anyhow::anyhow!("[customers]: {e}"))?;
    let path = opts.file.display().to_string();
    let file = std::fs::File::open(&opts.file).with_context(|| format!("cannot open {path}"))?;
    let parsed = contact_csv::parse(std::io::BufReader::new(file), &path, &plan)?;
    let rt = tokio::runtime::Runtime::new()?;
    let summary = rt.block_on(async {
        let store = comm_server::server::open_store(&config).await?;
        // indicatif draws nothing when standard error is not a terminal.
        let bar = indicatif::ProgressBar::new(parsed.contacts.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} contacts {eta}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        let result = contact_csv::import(
            &store,
            &opts.campaign,
            &parsed,
            &path,
            SystemClock.unix_ms(),
            &mut |n| bar.set_position(n as u64),
        )
        .await;
        bar.finish_and_clear();
        store.close().await;
        anyhow::Ok(result?)
    })?;
    println!(
        "{path}: {} row(s), {} contact(s) in campaign {}: {} added, {} updated",
        parsed.row_count,
        parsed.contacts.len(),
        opts.campaign,
        summary.created,
        summary.updated
    );
    Ok(())
}

fn campaign(opts: CampaignOpts) -> anyhow::Result<()> {
    use comm_server::store::CampaignState;
    use comm_server::time::{Clock, SystemClock};

    let config = campaign_config(opts.config.as_ref(), opts.data_dir, &opts.name)?;
    let state = match opts.action {
        CampaignAction::Start => CampaignState::Running,
        CampaignAction::Pause => CampaignState::Paused,
        CampaignAction::Stop => CampaignState::Stopped,
    };
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async {
        let store = comm_server::server::open_store(&config).await?;
        let result = store
            .set_campaign_state(&opts.name, state, SystemClock.unix_ms())
            .await;
        store.close().await;
        anyhow::Ok(result?)
    })?;
    println!("campaign {}: {state}", opts.name);
    Ok(())
}

fn serve(opts: ServeOpts) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let mut config = load(opts.config.as_ref())?;
    if let Some(d) = opts.data_dir {
        config.server.data_dir = d;
    }
    let parse = |s: &str| -> anyhow::Result<Option<SocketAddr>> {
        Ok(if s.is_empty() { None } else { Some(s.parse()?) })
    };
    let udp = opts
        .sip_udp
        .or(opts.sip)
        .map_or_else(|| parse(&config.sip.udp), |a| Ok(Some(a)))?;
    let tcp = opts
        .sip_tcp
        .or(opts.sip)
        .map_or_else(|| parse(&config.sip.tcp), |a| Ok(Some(a)))?;
    let http = opts
        .http
        .map_or_else(|| parse(&config.http.listen), |a| Ok(Some(a)))?;
    let grpc = opts
        .grpc
        .map_or_else(|| parse(&config.grpc.listen), |a| Ok(Some(a)))?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let listeners = Listeners::bind(udp, tcp)
            .await?
            .with_http(http)
            .await?
            .with_grpc(grpc)
            .await?;
        tracing::info!(udp = ?listeners.udp_addr(), tcp = ?listeners.tcp_addr(), http = ?listeners.http_addr(), grpc = ?listeners.grpc_addr(), "listening");
        let app = App::build(config).await?;
        app.run(listeners, shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
