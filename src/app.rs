//! The application: what every service of a running node shares ([`App`]: configuration,
//! TLS acceptor, filters, spool, quarantine, delivery queue, the users' lists, recipient
//! verification, the shutdown signal), and keeping it current: [`reload`] (SIGHUP, the admin
//! console), [`watch_rules`] (rule files changed on disk) and [`refresh_user_lists`] (the users'
//! lists in the store).
//!
//! Layer: above the back services it holds (quarantine, relay) and below those that take it
//! (session, web, the metrics endpoint, the scheduler, the server).
//!
//! Guarantees: a reload applies the configuration, certificate and filters all together or not
//! at all (every error is returned with file and line, and the running set stays in force); the
//! users' lists are re-read every [`USER_LISTS_REFRESH`], and a store that cannot be read keeps
//! the last lists in force.

use crate::classifier::InForce;
use crate::config::{self, Config};
use crate::quarantine::Quarantine;
use crate::relay::{QueueHandle, RecipientVerifier};
use crate::scoring::{self, Scorer};
use crate::spool::Spool;
use crate::tls;
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// What every service of a running node shares.
pub struct App {
    pub config: Arc<ArcSwap<Config>>,
    /// The configuration file (read again on reload).
    pub config_path: std::path::PathBuf,
    pub tls: Arc<ArcSwap<Option<TlsAcceptor>>>,
    pub spool: Arc<Spool>,
    /// The quarantine: held copies go to its holding spool, then into the store.
    pub quarantine: Arc<Quarantine>,
    pub queue: QueueHandle,
    /// The filters, scores and policy; swapped whole on reload.
    pub scorer: Arc<ArcSwap<Scorer>>,
    /// The users' own lists and filtering choices as last read from the store; every scorer
    /// put in force carries them.
    pub user_policies: ArcSwap<Vec<(String, crate::lists::UserPolicy)>>,
    pub verifier: RecipientVerifier,
    /// Open SMTP connections and whether the server is under stress.
    pub connections: Arc<crate::admission::Limiter>,
    /// Becomes true when the server is shutting down.
    pub shutdown: watch::Receiver<bool>,
}

/// The configuration, certificate and filters from `path`, or every error.
fn load_everything(path: &std::path::Path, in_force: &InForce) -> Result<(Config, Option<TlsAcceptor>, Scorer), Vec<String>> {
    let new = config::load(path).map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let acceptor = new.tls.as_ref().map(tls::acceptor).transpose().map_err(|e| vec![e.to_string()])?;
    let scorer = scoring::build(Arc::new(new.clone()), in_force).map_err(|e| e.0)?;
    Ok((new, acceptor, scorer))
}

/// Loads the configuration, certificate and filters anew; applies all or nothing. Returns the
/// errors (with file and line) when nothing was applied.
pub async fn reload(path: &std::path::Path, app: &App) -> Result<(), Vec<String>> {
    crate::systemd::notify("RELOADING=1");
    let owned = path.to_path_buf();
    let in_force = app.quarantine.learner().in_force().clone();
    // Loading rule files compiles thousands of regexes: keep it off the async workers.
    let loaded = tokio::task::spawn_blocking(move || load_everything(&owned, &in_force)).await;
    let result = loaded.unwrap_or_else(|_| Err(vec!["loading failed internally".to_string()]));
    match result {
        Ok((new, acceptor, scorer)) => {
            let old = app.config.load();
            if old.listen.iter().map(|l| l.address).ne(new.listen.iter().map(|l| l.address)) {
                tracing::warn!(event = "reload", note = "listener addresses change only on restart");
            }
            app.tls.store(Arc::new(acceptor));
            put_in_force(app, scorer);
            read_user_lists(app).await;
            app.config.store(Arc::new(new));
            app.scorer.load().log_rules_in_force();
            metrics::counter!("moat_rule_reloads_total", "outcome" => "applied").increment(1);
            tracing::info!(event = "reload", outcome = "applied");
            crate::systemd::notify("READY=1");
            Ok(())
        }
        Err(errors) => {
            for error in &errors {
                tracing::error!(event = "reload", outcome = "refused", error = %error);
            }
            metrics::counter!("moat_rule_reloads_total", "outcome" => "refused").increment(1);
            tracing::error!(event = "reload", outcome = "refused", note = "the running configuration stays in force");
            crate::systemd::notify("READY=1");
            Err(errors)
        }
    }
}

/// Reloads the filters when a rule file changes (checked every `rules.watch`), keeping the
/// running set when the new files have any error. The configuration itself changes only on SIGHUP.
pub async fn watch_rules(app: Arc<App>) {
    let mut shutdown = app.shutdown.clone();
    let mut last = scoring::rules_fingerprint(&app.config.load());
    loop {
        let every = app.config.load().rules_watch();
        let pause = if every.is_zero() { Duration::from_secs(5) } else { every };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.wait_for(|down| *down) => return,
        }
        let config = app.config.load_full();
        if config.rules_watch().is_zero() {
            continue;
        }
        let now = scoring::rules_fingerprint(&config);
        if now == last {
            continue;
        }
        last = now;
        tracing::info!(event = "rules_changed");
        let in_force = app.quarantine.learner().in_force().clone();
        match tokio::task::spawn_blocking(move || scoring::build(config, &in_force)).await {
            Ok(Ok(scorer)) => {
                put_in_force(&app, scorer);
                app.scorer.load().log_rules_in_force();
                metrics::counter!("moat_rule_reloads_total", "outcome" => "applied").increment(1);
            }
            Ok(Err(errors)) => {
                for error in &errors.0 {
                    tracing::error!(event = "reload", outcome = "refused", error = %error);
                }
                metrics::counter!("moat_rule_reloads_total", "outcome" => "refused").increment(1);
                tracing::error!(event = "reload", outcome = "refused", note = "the running rules stay in force");
            }
            Err(_) => tracing::error!(event = "reload", outcome = "refused", note = "loading the rules failed internally"),
        }
    }
}

/// Reads the users' lists from the store and, when they changed, puts them in force.
pub async fn read_user_lists(app: &App) {
    match app.quarantine.store().user_policies().await {
        Ok(users) if users != **app.user_policies.load() => {
            tracing::info!(event = "user_lists_loaded", users = users.len());
            app.user_policies.store(Arc::new(users));
            let users = app.user_policies.load();
            app.scorer.rcu(|current| current.with_user_policies(&users));
        }
        Ok(_) => {}
        Err(error) => tracing::warn!(event = "user_lists_unavailable", error = %error, note = "the last lists read stay in force"),
    }
}

/// Makes `scorer` the one new sessions use, with the users' lists from the store.
fn put_in_force(app: &App, scorer: Scorer) {
    app.quarantine.set_reasons(scorer.reasons());
    app.scorer.store(Arc::new(scorer.with_user_policies(&app.user_policies.load())));
}

/// How often the users' lists are read from the store (a change made on another node, or
/// through the web interface, takes effect within this).
pub const USER_LISTS_REFRESH: Duration = Duration::from_secs(15);

/// Keeps the scorer's user lists in step with the store. When the store cannot be read, the
/// last lists read stay in force.
pub async fn refresh_user_lists(app: Arc<App>) {
    let mut shutdown = app.shutdown.clone();
    loop {
        read_user_lists(&app).await;
        tokio::select! {
            _ = tokio::time::sleep(USER_LISTS_REFRESH) => {}
            _ = shutdown.wait_for(|down| *down) => return,
        }
    }
}
