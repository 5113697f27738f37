use clap::{Parser, Subcommand};
use paywarden::config::Settings;
use paywarden::startup::{connect_database, Application};
use paywarden::telemetry;

/// paywarden: orders, QR payment attempts, and an expiry rule that never trusts callbacks alone.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// The secrets stored in the database.
    Secrets {
        #[command(subcommand)]
        action: SecretsCommand,
    },
}

#[derive(Subcommand)]
enum SecretsCommand {
    /// Re-seal every provider account under secrets.master_key (the keys that sealed them
    /// before must be in secrets.previous_master_keys); progress on stderr.
    Rotate,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let settings = Settings::load()?;
    let telemetry = telemetry::init(&settings.telemetry)?;
    let result = run(cli, settings).await;
    telemetry.shutdown();
    result
}

async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Migrate => {
            let db = connect_database(&settings.database).await?;
            paywarden::startup::migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Secrets {
            action: SecretsCommand::Rotate,
        } => {
            let vault = settings
                .secrets
                .vault()?
                .ok_or_else(|| anyhow::anyhow!("secrets.master_key is not set: nothing to rotate to"))?;
            let db = connect_database(&settings.database).await?;
            paywarden::startup::migrate(&db).await?;
            eprintln!(
                "re-sealing provider accounts under master key {}",
                vault.current_key_id()
            );
            let done = actors::store::accounts::rotate(&db, &vault, |done, total| {
                eprintln!(
                    "  {} of {total}: {} re-sealed, {} already under the current key",
                    done.resealed + done.already_current,
                    done.resealed,
                    done.already_current
                );
            })
            .await?;
            eprintln!(
                "done: {} re-sealed, {} already under the current key; the previous master keys can be dropped once every node runs with this one",
                done.resealed, done.already_current
            );
            Ok(())
        }
        Command::Serve => {
            if settings.uses_dev_credentials() {
                tracing::warn!(
                    client_key = paywarden::config::DEV_CLIENT_KEY,
                    merchant = "demo",
                    admin_token = paywarden::config::DEV_ADMIN_TOKEN,
                    "development credentials are active; never use this profile in production"
                );
            }
            let app = Application::build(settings.clone()).await?;
            tracing::info!(
                profile = %settings.env,
                address = %app.base_url(),
                sqlite = settings.database.is_sqlite(),
                redis = settings.redis.url().is_some(),
                "paywarden listening on {}",
                app.base_url()
            );
            app.run_until_stopped().await?;
            tracing::info!("paywarden stopped");
            Ok(())
        }
    }
}
