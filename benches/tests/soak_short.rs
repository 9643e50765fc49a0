//! The soak's short version, in the test command: 3 seconds against the debug server binary,
//! no errors, every reply checked.
#![allow(clippy::unwrap_used)] // Tests fail loudly on purpose.

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_soak_serves_everything_with_no_errors() {
    let binary = pixl_ipc_test_utils::server_binary();
    let report = pixl_ipc_benches::soak::run(&binary, Duration::from_secs(3))
        .await
        .unwrap();
    eprintln!("{}", report.markdown());
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(report.served > 100, "{report:?}");
}
