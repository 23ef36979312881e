//! The page in a real browser: headless Chromium (Debian's `chromium`, which `.ci/run`
//! installs) driven over CDP through every view of `rnnkit serve` on 127.0.0.1: type, click,
//! read the page's text, and save a screenshot of each view in target/browser-shots/.

mod common;
use common::serve::Server;
use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::{Browser, LaunchOptions, Tab};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Chromium, or None outside CI when it is not installed (CI installs it and must run this).
fn browser() -> Option<Browser> {
    let path = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    let Some(path) = path else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install chromium (.ci/run does)"
        );
        eprintln!("no chromium: browser tests skipped");
        return None;
    };
    let profile = std::env::temp_dir().join(format!("rnnkit-chromium-{}", std::process::id()));
    let args: Vec<&std::ffi::OsStr> = [
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]
    .iter()
    .map(std::ffi::OsStr::new)
    .collect();
    let opts = LaunchOptions::default_builder()
        .path(Some(path))
        .headless(true)
        .sandbox(false)
        .window_size(Some((1100, 1200)))
        .user_data_dir(Some(profile))
        .idle_browser_timeout(Duration::from_secs(120))
        .args(args)
        .build()
        .expect("launch options");
    Some(Browser::new(opts).expect("chromium starts"))
}

fn shot(tab: &Tab, name: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser-shots");
    std::fs::create_dir_all(&dir).unwrap();
    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .unwrap();
    std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
}

/// The text of the first element matching `css`, once it exists.
fn text(tab: &Tab, css: &str) -> String {
    tab.wait_for_element_with_custom_timeout(css, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .get_inner_text()
        .unwrap()
}

fn open(browser: &Browser, sv: &Server, model: &str) -> Arc<Tab> {
    let tab = browser.new_tab().unwrap();
    tab.navigate_to(&format!("{}/#model={model}", sv.url))
        .unwrap();
    tab.wait_until_navigated().unwrap();
    let status = text(&tab, "#status");
    assert!(status.contains("ready") || status.is_empty(), "{status}");
    tab
}

/// Types `input` into the text box and runs it with the keyboard (focus Run, Enter).
fn type_and_run(tab: &Tab, input: &str) {
    let area = tab.wait_for_element("#text").unwrap();
    area.click().unwrap();
    tab.evaluate("document.getElementById('text').value = ''", false)
        .unwrap();
    area.type_into(input).unwrap();
    tab.wait_for_element("#run").unwrap().focus().unwrap();
    tab.press_key("Enter").unwrap();
}

/// Waits until `js` (an expression) is true in the page.
fn until(tab: &Tab, js: &str) {
    for _ in 0..300 {
        let v = tab.evaluate(js, false).unwrap().value;
        if v == Some(serde_json::Value::Bool(true)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("never true: {js}");
}

#[test]
fn every_view_in_a_browser() {
    let Some(browser) = browser() else { return };
    let sv = Server::start(&[], &[]);

    // Tagger: entities highlighted by type in the typed text; a token's tag probabilities.
    let tab = open(&browser, &sv, "ner");
    type_and_run(&tab, "Boris lives in Oslo .");
    until(&tab, "!!document.getElementById('entities')");
    let ents = text(&tab, "#entities");
    assert!(ents.contains("Boris") && ents.contains("Oslo"), "{ents}");
    tab.wait_for_element("#output .tokens .tok")
        .unwrap()
        .click()
        .unwrap();
    let tip = text(&tab, "#tip");
    assert!(
        tip.starts_with("Boris:"),
        "the first token's tag probabilities: {tip}"
    );
    shot(&tab, "tag");

    // Look inside: another cell recolours the text; a selected span finds its cells.
    let before = tab
        .evaluate(
            "document.querySelector('#coloured .tok').style.background",
            false,
        )
        .unwrap()
        .value;
    tab.evaluate("const c = document.getElementById('cell'); c.value = 3; c.dispatchEvent(new Event('input'))", false)
        .unwrap();
    let after = tab
        .evaluate(
            "document.querySelector('#coloured .tok').style.background",
            false,
        )
        .unwrap()
        .value;
    assert_ne!(
        before, after,
        "cell 3 colours the text differently from cell 0"
    );
    tab.evaluate(
        "const s = document.querySelectorAll('#coloured .tok'); const r = document.createRange(); \
         r.setStartBefore(s[3]); r.setEndAfter(s[3]); getSelection().removeAllRanges(); getSelection().addRange(r)",
        false,
    )
    .unwrap();
    tab.wait_for_element("#find").unwrap().click().unwrap();
    until(
        &tab,
        "document.querySelectorAll('#cells button').length === 8",
    );
    let cells = text(&tab, "#cells");
    assert!(cells.contains("(r "), "{cells}");
    shot(&tab, "inside");

    // Classifier: the label, the probabilities, tokens shaded by their weights.
    let tab = open(&browser, &sv, "sst");
    type_and_run(&tab, "a great film");
    let label = text(&tab, "#label");
    assert!(label == "Label: 1" || label == "Label: 0", "{label}");
    until(
        &tab,
        "document.querySelectorAll('#weights .tok').length === 3",
    );
    assert!(text(&tab, "#probs").contains("0."), "probabilities shown");
    shot(&tab, "classify");

    // Translator: the hypotheses and the attention heatmap.
    let tab = open(&browser, &sv, "de-en");
    type_and_run(&tab, "Ein Hund läuft.");
    until(&tab, "!!document.getElementById('attention')");
    let tr = text(&tab, "#output ol");
    assert!(!tr.trim().is_empty(), "a translation");
    shot(&tab, "translate");

    // Language model: the stream arrives; a token shows its next-token probabilities.
    let tab = open(&browser, &sv, "lm");
    type_and_run(&tab, "the ");
    until(
        &tab,
        "document.getElementById('status').textContent.includes('generated')",
    );
    let gen = text(&tab, "#generated");
    assert!(gen.len() > 20, "{gen:?}");
    tab.wait_for_element("#generated .tok")
        .unwrap()
        .click()
        .unwrap();
    let tip = tab
        .evaluate("document.getElementById('tip').textContent", false)
        .unwrap()
        .value;
    assert!(
        tip.as_ref()
            .and_then(|v| v.as_str())
            .is_some_and(|t| t.contains("next token")),
        "{tip:?} {:?}",
        tab.evaluate(
            "document.getElementById('generated').innerHTML.slice(0, 300)",
            false
        )
        .unwrap()
        .value
    );
    shot(&tab, "generate");

    // Errors reach the page: a bad option shows the server's message.
    tab.evaluate(
        "document.getElementById('opt-temperature').value = -1",
        false,
    )
    .unwrap();
    tab.wait_for_element("#run").unwrap().click().unwrap();
    until(
        &tab,
        "document.getElementById('status').className === 'error'",
    );
    assert!(text(&tab, "#status").contains("temperature"));
}
