//! The well-behaved load shared by the soak and the hostile soak: clients that send the
//! original's sized echo requests back to back and check every reply against its request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use pixl_ipc_client::Client;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::sized_message;

/// How many failures [`EchoOutcome::error_notes`] keeps, described.
const NOTES_KEPT: usize = 5;

/// Counts shared by the running lanes.
#[derive(Default)]
struct Tally {
    checked: AtomicU64,
    errors: AtomicU64,
    notes: Mutex<Vec<String>>,
    latencies_ms: Mutex<Vec<f64>>,
}

/// Echo lanes running until a deadline: on each client, `lanes` calls in flight, sizes cycling
/// through 1K, 5K and 20K, with 100K every 16th call.
pub struct EchoLoad {
    tally: Arc<Tally>,
    workers: Vec<JoinHandle<()>>,
}

/// What the lanes saw, once they have all ended.
#[derive(Debug, Clone)]
pub struct EchoOutcome {
    /// Echo replies equal to their request.
    pub checked: u64,
    /// Failed calls or replies that differed from the request.
    pub errors: u64,
    /// The first few failures, described.
    pub error_notes: Vec<String>,
    /// Latency of every checked call in ms, sorted ascending.
    pub latencies_ms: Vec<f64>,
}

impl EchoOutcome {
    /// The sample at quantile `q` (0.0 to 1.0) of the sorted latencies, nearest rank; 0 if none.
    pub fn quantile_ms(&self, q: f64) -> f64 {
        let all = &self.latencies_ms;
        all.get(((all.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    }
}

impl EchoLoad {
    /// Starts `lanes` echo lanes on each of `clients`, each running until `deadline`.
    pub fn start(clients: &[Client], lanes: u64, deadline: Instant) -> EchoLoad {
        let messages: Arc<Vec<Value>> = Arc::new(
            [1, 5, 20, 100]
                .iter()
                .map(|size| sized_message(*size))
                .collect(),
        );
        let tally = Arc::new(Tally::default());
        let mut workers = Vec::new();
        for client in clients {
            for lane in 0..lanes {
                let (client, messages, tally) = (client.clone(), messages.clone(), tally.clone());
                workers.push(tokio::spawn(async move {
                    let mut mine = Vec::new();
                    let mut call = lane;
                    while Instant::now() < deadline {
                        call += 1;
                        let message = if call % 16 == 0 {
                            &messages[3]
                        } else {
                            &messages[(call % 3) as usize]
                        };
                        let sent = Instant::now();
                        let failure = match client.send("/ipcserver/test/echo", message).await {
                            Ok(reply) if &reply == message => {
                                tally.checked.fetch_add(1, Ordering::Relaxed);
                                mine.push(sent.elapsed().as_secs_f64() * 1000.0);
                                continue;
                            }
                            Ok(_) => "a reply that differs from its request".to_owned(),
                            Err(error) => format!("{error}"),
                        };
                        tally.errors.fetch_add(1, Ordering::Relaxed);
                        if let Ok(mut notes) = tally.notes.lock() {
                            if notes.len() < NOTES_KEPT {
                                notes.push(failure);
                            }
                        }
                    }
                    if let Ok(mut all) = tally.latencies_ms.lock() {
                        all.extend(mine);
                    }
                }));
            }
        }
        EchoLoad { tally, workers }
    }

    /// Replies checked so far.
    pub fn checked(&self) -> u64 {
        self.tally.checked.load(Ordering::Relaxed)
    }

    /// Errors so far.
    pub fn errors(&self) -> u64 {
        self.tally.errors.load(Ordering::Relaxed)
    }

    /// Waits for every lane to reach the deadline and end; what they saw.
    pub async fn finish(self) -> anyhow::Result<EchoOutcome> {
        for worker in self.workers {
            worker.await?;
        }
        let tally = &self.tally;
        let mut latencies_ms = tally
            .latencies_ms
            .lock()
            .map(|all| all.clone())
            .unwrap_or_default();
        latencies_ms.sort_by(f64::total_cmp);
        Ok(EchoOutcome {
            checked: tally.checked.load(Ordering::Relaxed),
            errors: tally.errors.load(Ordering::Relaxed),
            error_notes: tally
                .notes
                .lock()
                .map(|notes| notes.clone())
                .unwrap_or_default(),
            latencies_ms,
        })
    }
}
