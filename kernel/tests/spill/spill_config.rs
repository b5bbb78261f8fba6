//! `fdc-kernel check-config` refuses a spill section that cannot work, before
//! the kernel ever opens the directory (it does not have to exist).

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fdc-kernel");

fn check_config(vars: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(BIN)
        .arg("check-config")
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_refuses_a_zero_spill_budget() {
    let dir = "/nonexistent/fdc-spill";
    let (ok, err) = check_config(&[("FDC_SPILL__DIR", dir), ("FDC_SPILL__MAX_BYTES", "0")]);
    assert!(!ok, "{err}");
    assert!(err.contains("spill.max_bytes"), "{err}");
    assert!(err.contains("fix:"), "{err}");

    let (ok, err) = check_config(&[("FDC_SPILL__DIR", dir), ("FDC_SPILL__SEGMENT_BYTES", "0")]);
    assert!(!ok, "{err}");
    assert!(err.contains("spill.segment_bytes"), "{err}");

    // The same section with a usable budget passes.
    let (ok, err) = check_config(&[("FDC_SPILL__DIR", dir), ("FDC_SPILL__MAX_BYTES", "1000000")]);
    assert!(ok, "{err}");
}
