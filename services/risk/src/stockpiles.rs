//! Stockpiles for scenarios, read from the emergency service over mutual
//! TLS as the workload `risk` acting as itself (the emergency service lists
//! it in `reader_workloads` and shows it figures only of CLEAR and GREEN
//! reports), with a timeout: a scenario never waits long on it, and says
//! so when it could not ask.

use std::collections::BTreeMap;
use std::time::Duration;

use orex_kit::tls::LoadedTls;
use orex_proto::common::v1::Mineral;
use orex_proto::emergency::v1::emergency_service_client::EmergencyServiceClient;
use orex_proto::emergency::v1::{ListStockpilesRequest, StockpileFilter, stockpile_content};
use prost_types::Timestamp;
use tonic::transport::Channel;

/// Most pages read for one scenario (50 members × 500 per page is far more
/// than any partnership).
const MAX_PAGES: usize = 20;

/// One member's latest stockpile report of the mineral, as the risk
/// service may use it.
#[derive(Debug, Clone, PartialEq)]
pub enum Holding {
    /// CLEAR or GREEN figures: the stockpile in tonnes, and when reported.
    Figures {
        /// Tonnes held.
        tonnes: f64,
        /// When the emergency service stored the report.
        reported_at: Option<Timestamp>,
    },
    /// A refusal, or figures marked for a narrower audience.
    Withheld,
}

/// What scenarios know about stockpiles of one mineral.
#[derive(Debug, Clone, PartialEq)]
pub enum Stockpiles {
    /// Each member that reported (members absent did not report).
    Read(BTreeMap<String, Holding>),
    /// The emergency service could not be asked; why, for the answer.
    Unavailable(String),
}

/// A lazily connected client of the emergency service.
#[derive(Debug, Clone)]
pub struct StockpileSource {
    client: EmergencyServiceClient<Channel>,
    timeout: Duration,
}

impl StockpileSource {
    /// A client of `address` (certificate name `server_name`) as this
    /// service's workload; nothing connects until the first scenario.
    pub fn new(
        address: &str,
        server_name: &str,
        tls: &LoadedTls,
        timeout: Duration,
    ) -> Result<Self, orex_kit::KitError> {
        let channel = orex_kit::transport::Dialer::new(address, server_name, tls)
            .map_err(|e| orex_kit::KitError::Config(format!("emergency: {e}")))?
            .map(|e| e.connect_timeout(timeout))
            .connect_lazy();
        Ok(Self {
            client: EmergencyServiceClient::new(channel),
            timeout,
        })
    }

    /// Every member's latest report of `mineral`, or why it could not be read.
    pub async fn read(&self, mineral: Mineral) -> Stockpiles {
        match tokio::time::timeout(self.timeout, self.read_all(mineral)).await {
            Ok(Ok(held)) => Stockpiles::Read(held),
            Ok(Err(status)) => {
                tracing::warn!(error = %status, "could not read stockpiles for a scenario");
                Stockpiles::Unavailable(format!(
                    "the emergency service answered {:?}",
                    status.code()
                ))
            }
            Err(_) => Stockpiles::Unavailable(format!(
                "the emergency service did not answer within {:?}",
                self.timeout
            )),
        }
    }

    async fn read_all(&self, mineral: Mineral) -> Result<BTreeMap<String, Holding>, tonic::Status> {
        let mut client = self.client.clone();
        let mut held = BTreeMap::new();
        let mut page_token = String::new();
        for _ in 0..MAX_PAGES {
            let page = client
                .list_stockpiles(ListStockpilesRequest {
                    filter: Some(StockpileFilter {
                        minerals: vec![mineral as i32],
                        members: vec![],
                    }),
                    page_size: 500,
                    page_token,
                })
                .await?
                .into_inner();
            for s in page.stockpiles {
                let figures = match s.content.as_ref().and_then(|c| c.disclosure.as_ref()) {
                    Some(stockpile_content::Disclosure::Figures(f))
                        if !s.figures_restricted
                            && s.content.as_ref().is_some_and(|c| {
                                orex_membership::partnership_wide(c.marking())
                            }) =>
                    {
                        Some(f.stockpile_tonnes)
                    }
                    _ => None,
                };
                let holding = match figures {
                    Some(tonnes) => Holding::Figures {
                        tonnes,
                        reported_at: s.reported_at,
                    },
                    None => Holding::Withheld,
                };
                held.insert(s.member, holding);
            }
            if page.next_page_token.is_empty() {
                return Ok(held);
            }
            page_token = page.next_page_token;
        }
        Err(tonic::Status::resource_exhausted(
            "more stockpile pages than any partnership has",
        ))
    }
}
