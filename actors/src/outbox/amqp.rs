//! The AMQP sink: each event is published to a durable fanout exchange as a persistent message,
//! and counts as delivered only when the broker confirms it (publisher confirms), as in seed
//! 002. The connection is opened lazily and dropped on any error, so a broker that was down is
//! simply reconnected to on the next try.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::publisher_confirm::Confirmation;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// Limit of connecting, or of one publish until its confirm.
const AMQP_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest one publish holds the sink: the timeout, then closing a broken connection.
const WORST_PUBLISH: Duration = Duration::from_secs(6);

/// Publishes that surely finish inside `lease`: they run one at a time (one channel, under a
/// lock), and one publish of the lease is kept as margin. At least one.
pub fn publishes_within(lease: Duration) -> u64 {
    let rounds = (lease.as_millis() / WORST_PUBLISH.as_millis()).saturating_sub(1).max(1);
    u64::try_from(rounds).unwrap_or(u64::MAX)
}

#[derive(Debug, thiserror::Error)]
pub enum AmqpError {
    #[error("amqp: {0}")]
    Lapin(#[from] lapin::Error),
    #[error("amqp broker did not answer in time")]
    Timeout,
    #[error("amqp broker refused the message (nack)")]
    Nacked,
}

pub struct AmqpSink {
    uri: String,
    exchange: String,
    /// The open connection and its confirm-mode channel, if any.
    state: tokio::sync::Mutex<Option<(Connection, Channel)>>,
}

impl AmqpSink {
    pub fn new(uri: String, exchange: String) -> Self {
        Self {
            uri,
            exchange,
            state: tokio::sync::Mutex::new(None),
        }
    }

    pub fn exchange(&self) -> &str {
        &self.exchange
    }

    /// Publishes one event and waits for the broker's confirm.
    ///
    /// # Errors
    /// Connection, channel or publish failures, a nack, or a timeout.
    pub async fn publish(&self, event_id: &str, event_type: &str, payload: &[u8]) -> Result<(), AmqpError> {
        let mut state = self.state.lock().await;
        let result = tokio::time::timeout(
            AMQP_TIMEOUT,
            self.publish_locked(&mut state, event_id, event_type, payload),
        )
        .await
        .unwrap_or(Err(AmqpError::Timeout));
        if result.is_err() {
            // Start from a fresh connection next time.
            if let Some((connection, _)) = state.take() {
                let _ = tokio::time::timeout(Duration::from_secs(1), connection.close(200, "reconnecting")).await;
            }
        }
        result
    }

    async fn publish_locked(
        &self,
        state: &mut Option<(Connection, Channel)>,
        event_id: &str,
        event_type: &str,
        payload: &[u8],
    ) -> Result<(), AmqpError> {
        let usable = state
            .as_ref()
            .is_some_and(|(connection, channel)| connection.status().connected() && channel.status().connected());
        if !usable {
            *state = Some(self.connect().await?);
        }
        let Some((_, channel)) = state.as_ref() else {
            return Err(AmqpError::Timeout);
        };
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(event_id.into())
            .with_type(event_type.into());
        let confirm = channel
            .basic_publish(
                &self.exchange,
                event_type,
                BasicPublishOptions::default(),
                payload,
                properties,
            )
            .await?
            .await?;
        match confirm {
            Confirmation::Ack(_) => Ok(()),
            Confirmation::Nack(_) | Confirmation::NotRequested => Err(AmqpError::Nacked),
        }
    }

    async fn connect(&self) -> Result<(Connection, Channel), AmqpError> {
        let properties = ConnectionProperties::default()
            .with_executor(tokio_executor_trait::Tokio::current())
            .with_reactor(tokio_reactor_trait::Tokio);
        let connection = Connection::connect(&self.uri, properties).await?;
        let channel = connection.create_channel().await?;
        channel.confirm_select(ConfirmSelectOptions::default()).await?;
        channel
            .exchange_declare(
                &self.exchange,
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        tracing::info!(exchange = %self.exchange, "amqp sink connected");
        Ok((connection, channel))
    }
}
