//! The panel in a real headless Chromium (Debian's chromium + chromium-driver),
//! driven through WebDriver: the superadmin creates a namespace and a user, then
//! that user signs in and sees only what their role allows.

mod common;

use common::{Backend, ROOT_PASSWORD};
use fantoccini::{Client, ClientBuilder, Locator};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// chromedriver on a free loopback port, killed on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port for a chromedriver: free a moment ago and never handed out before in this
/// process (the kernel may give a just-released port again, and tests start drivers side by side).
fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut given = GIVEN.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

async fn start_browser() -> (Driver, Client) {
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "chromedriver must be installed (apt-get install chromium chromium-driver; scripts/dev.sh test does it)",
        );
    let profile = tempfile::tempdir().expect("profile dir");
    let driver = Driver { child, port, _profile: profile };
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            // --ignore-certificate-errors: the HTTPS test server's self-signed certificate was made by
            // the test itself (what a person accepts once in the browser).
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--ignore-certificate-errors",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--window-size=1280,900", format!("--user-data-dir={}", driver._profile.path().display())]
        }),
    );
    let url = format!("http://127.0.0.1:{}", driver.port);
    let mut last_error = None;
    for _ in 0..50 {
        match ClientBuilder::rustls().expect("tls connector").capabilities(caps.clone()).connect(&url).await {
            Ok(client) => return (driver, client),
            Err(err) => {
                last_error = Some(err);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    panic!("could not start Chromium through chromedriver: {last_error:?}");
}

/// Saves a screenshot of the page as a test artifact (`target/tmp/screenshots/NAME.png`) and
/// checks the page with axe-core: every page a test shows passes the automated accessibility
/// check with no serious or critical violation, as each role sees it, in each state shown.
async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }
    let violations = accessibility_violations(client, name).await;
    assert!(violations.is_empty(), "axe-core, serious or critical:\n{}", violations.join("\n"));
}

async fn fill(client: &Client, selector: &str, value: &str) {
    let field = client.find(Locator::Css(selector)).await.unwrap_or_else(|e| panic!("field {selector}: {e}"));
    field.send_keys(value).await.expect("type");
}

/// Clicks a form's submit button and waits until the next page has loaded.
async fn submit(client: &Client, form: &str) {
    let button = client
        .find(Locator::Css(&format!("{form} button[type=submit]")))
        .await
        .unwrap_or_else(|e| panic!("button in {form}: {e}"));
    let old_page = client.find(Locator::Css("html")).await.expect("page");
    button.click().await.expect("click");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    // The old document's element goes stale once the browser has navigated.
    while old_page.tag_name().await.is_ok() {
        assert!(std::time::Instant::now() < deadline, "submitting {form} did not load a new page");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.wait().for_element(Locator::Css("body")).await.expect("new page");
}

/// Runs axe-core (installed with the panel's npm packages by `scripts/dev.sh`) on the page as it
/// is: its serious and critical violations, one line each, named after `page`.
async fn accessibility_violations(client: &Client, page: &str) -> Vec<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/assets/node_modules/axe-core/axe.min.js");
    let axe = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{path}: {e} (run `bash scripts/dev.sh setup`, which installs it)"));
    client.execute(&axe, vec![]).await.expect("inject axe-core");
    let script = "const done = arguments[0]; \
        axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations \
          .filter(v => v.impact === 'serious' || v.impact === 'critical') \
          .map(v => v.impact + ' ' + v.id + ': ' + v.help + ' — ' + v.nodes.slice(0, 3).map(n => n.target.join(' ')).join(', '))), \
          e => done(['axe-core failed: ' + e]));";
    let found = client.execute_async(script, vec![]).await.expect("axe.run");
    found
        .as_array()
        .map(|v| v.iter().filter_map(|x| x.as_str()).map(|x| format!("{page}: {x}")).collect())
        .unwrap_or_default()
}

/// Clicks what `selector` finds (an option to pick, a box to tick).
async fn pick(client: &Client, selector: &str) {
    let found = client.find(Locator::Css(selector)).await.unwrap_or_else(|e| panic!("{selector}: {e}"));
    found.click().await.unwrap_or_else(|e| panic!("click {selector}: {e}"));
}

/// The value of a JavaScript expression in the page.
async fn js(client: &Client, expression: &str) -> serde_json::Value {
    client.execute(&format!("return ({expression});"), vec![]).await.unwrap_or_else(|e| panic!("{expression}: {e}"))
}

/// The refusal shown inside the form `form`: its text, after checking that it is announced
/// (role="alert"), sits in that very form, and is in view (not at the top of a page that jumped).
async fn refusal_in(client: &Client, form: &str) -> String {
    let alert = client
        .find(Locator::Css(&format!("{form} [role=alert]")))
        .await
        .unwrap_or_else(|e| panic!("no refusal with role=alert inside {form}: {e}"));
    let in_view = js(
        client,
        &format!(
            "(() => {{ const r = document.querySelector({:?}).getBoundingClientRect(); \
             return r.top >= 0 && r.bottom <= window.innerHeight; }})()",
            format!("{form} [role=alert]")
        ),
    )
    .await;
    assert_eq!(in_view, serde_json::json!(true), "the refusal in {form} is in view");
    alert.text().await.expect("text")
}

/// The current value of a field (what the person sees in it).
async fn value_of(client: &Client, selector: &str) -> String {
    let field = client.find(Locator::Css(selector)).await.unwrap_or_else(|e| panic!("field {selector}: {e}"));
    field.prop("value").await.expect("value").unwrap_or_default()
}

/// Loads the namespace page at `url` until it shows no operation in progress. The state cells
/// follow live events, so a wait on them can end before the server renders that state, and a page
/// with an operation in progress reloads itself when it ends (under a test's next click): this
/// fresh load renders what the server holds, and stays.
async fn settle(client: &Client, url: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        client.goto(url).await.expect("reload");
        if client.find_all(Locator::Css("[data-operation]")).await.expect("operations").is_empty() {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "an operation is still in progress on {url}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Resizes the window so that the page is `width` CSS pixels wide.
async fn set_width(client: &Client, width: u32) {
    client.set_window_size(width, 900).await.expect("resize the window");
    // Window decorations, if any, come off the viewport: widen by what is missing.
    let inner = js(client, "window.innerWidth").await.as_u64().expect("width");
    if inner != u64::from(width) {
        let outer = width + (width - u32::try_from(inner).expect("width"));
        client.set_window_size(outer, 900).await.expect("resize the window");
    }
    assert_eq!(js(client, "window.innerWidth").await, serde_json::json!(width), "the page is {width} px wide");
}

/// Checks that the page needs no horizontal scrolling; on failure names the elements that stick out.
async fn assert_fits(client: &Client, page: &str) {
    let report = js(
        client,
        "(() => { const w = window.innerWidth; if (document.documentElement.scrollWidth <= w) return ''; \
         const out = [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > w + 1); \
         return document.documentElement.scrollWidth + ' px for ' + w + ': ' + out.slice(0, 6).map(e => \
         e.tagName.toLowerCase() + '.' + [...e.classList].join('.') + ' ' + Math.round(e.getBoundingClientRect().right)).join(', '); })()",
    )
    .await;
    assert_eq!(report, serde_json::json!(""), "{page} scrolls sideways");
}

/// Whether every element `selector` matches lies within the viewport's width and is drawn.
async fn all_within_width(client: &Client, selector: &str) -> bool {
    let found = js(
        client,
        &format!(
            "(() => {{ const all = [...document.querySelectorAll({selector:?})]; return all.length > 0 && all.every(e => \
             {{ const r = e.getBoundingClientRect(); return r.width > 0 && r.left >= 0 && r.right <= window.innerWidth; }}); }})()"
        ),
    )
    .await;
    found == serde_json::json!(true)
}

/// Whether the element `selector` matches is drawn (not display:none anywhere up the tree).
async fn shown(client: &Client, selector: &str) -> bool {
    let found = js(client, &format!("(() => {{ const e = document.querySelector({selector:?}); return !!e && e.getClientRects().length > 0; }})()")).await;
    found == serde_json::json!(true)
}

async fn body_text(client: &Client) -> String {
    client.find(Locator::Css("body")).await.expect("body").text().await.expect("text")
}

async fn sign_in(client: &Client, base: &str, login: &str, password: &str) {
    client.goto(&format!("{base}/login")).await.expect("open sign-in");
    // Waited for, and said what was shown instead: in a full CI run the sign-in page over HTTPS was
    // once not there right after the navigation returned.
    if client.wait().at_most(Duration::from_secs(20)).for_element(Locator::Css("input[name=login]")).await.is_err() {
        let url = client.current_url().await.map(|u| u.to_string()).unwrap_or_default();
        let page = client.source().await.unwrap_or_default();
        panic!("no sign-in form at {url}:\n{}", page.chars().take(2000).collect::<String>());
    }
    fill(client, "input[name=login]", login).await;
    fill(client, "input[name=password]", password).await;
    submit(client, "form[action='/login']").await;
    client.wait().for_element(Locator::Css("header.top")).await.expect("signed in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_admin_defines_and_creates_a_cluster_in_the_panel() {
    let ns = format!("ui{}", hex::encode(rand::random::<[u8; 3]>()));
    let _cleanup = common::docker::DockerCleanup(vec![ns.clone()]);
    let server = common::start(Backend::Sqlite).await;
    let base = server.base.clone();
    let root = server.init_root().await;
    let r = server.post("/api/v1/namespaces", &root, serde_json::json!({"name": ns})).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED);
    let r = server.post("/api/v1/users", &root, serde_json::json!({"login": "ann", "password": "ann-password"})).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED);
    let r = server
        .call(
            reqwest::Method::PUT,
            &format!("/api/v1/namespaces/{ns}/members/ann"),
            Some(&root),
            Some(serde_json::json!({"role": "admin"})),
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED);

    let (_driver, client) = start_browser().await;
    sign_in(&client, &base, "ann", "ann-password").await;
    client.goto(&format!("{base}/namespaces/{ns}")).await.expect("open");
    assert!(body_text(&client).await.contains("No machines yet"));

    assert_eq!(js(&client, "document.documentElement.lang").await, serde_json::json!("en"), "<html lang>");

    // A spec with a mistake: the error names the field, next to the editor, which keeps the
    // edited text; nothing is saved.
    let yaml_form = format!("form[action='/namespaces/{ns}/cluster']");
    let typed = "machines:\n- count: 2\n  spec:\n    name: web\n";
    let editor = client.find(Locator::Css("textarea[name=spec]")).await.expect("editor");
    editor.clear().await.expect("clear");
    editor.send_keys(typed).await.expect("type");
    submit(&client, &yaml_form).await;
    let refusal = refusal_in(&client, &yaml_form).await;
    assert!(refusal.contains("machines[0].spec.name"), "{refusal}");
    assert_eq!(value_of(&client, "textarea[name=spec]").await, typed, "the edited spec is kept");
    // The line the message is about is selected in the editor and named.
    assert!(refusal.contains("(line 4,"), "{refusal}");
    let selected = js(
        &client,
        "(t => t.value.slice(t.selectionStart, t.selectionEnd))(document.querySelector('textarea[name=spec]'))",
    )
    .await;
    assert_eq!(selected, serde_json::json!("    name: web"), "the line of machines[0].spec.name is selected");
    assert!(body_text(&client).await.contains("No machines yet"), "nothing was created");
    screenshot(&client, "07b-spec-refused").await;

    // The quick form writes a valid spec; Create makes the machines and the page shows them running.
    let form = format!("form[action='/namespaces/{ns}/cluster/form']");
    let count = client.find(Locator::Css(&format!("{form} input[name=count]"))).await.expect("count");
    count.clear().await.expect("clear");
    count.send_keys("2").await.expect("type");
    let memory = client.find(Locator::Css(&format!("{form} input[name=memory_mb]"))).await.expect("memory");
    memory.clear().await.expect("clear");
    memory.send_keys("256").await.expect("type");
    submit(&client, &form).await;
    let text = body_text(&client).await;
    assert!(text.contains("Spec saved: 2 machine(s): node0, node1"), "{text}");
    // The quick form shows the saved spec, not its defaults.
    assert_eq!(value_of(&client, &format!("{form} input[name=memory_mb]")).await, "256");
    assert_eq!(value_of(&client, &format!("{form} select[name=backend]")).await, "docker");
    // What is typed in the quick form shows at once as the YAML it saves.
    js(&client, "(d => (d.open = true, true))(document.querySelector('form#quick-form').closest('details'))").await;
    let count_field = client.find(Locator::Css(&format!("{form} input[name=count]"))).await.expect("count");
    count_field.clear().await.expect("clear");
    count_field.send_keys("5").await.expect("type");
    let yaml = value_of(&client, "textarea[name=spec]").await;
    assert!(yaml.contains("- count: 5") && yaml.contains("memory: \"256MB\""), "{yaml}");
    client.goto(&format!("{base}/namespaces/{ns}")).await.expect("reload: nothing typed was saved");
    submit(&client, &format!("form[action='/namespaces/{ns}/cluster/create']")).await;
    // The page may already have reloaded itself (live updates); the action is in the activity list either way.
    let text = body_text(&client).await;
    assert!(text.contains("cluster.create"), "{text}");
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        client.goto(&format!("{base}/namespaces/{ns}")).await.expect("reload");
        let states = client.find_all(Locator::Css("tr[data-machine] [data-state]")).await.expect("rows");
        let mut texts = Vec::new();
        for s in &states {
            texts.push(s.text().await.expect("text"));
        }
        if texts.len() == 2 && texts.iter().all(|t| t == "running") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "machines not running: {texts:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    settle(&client, &format!("{base}/namespaces/{ns}")).await;
    let text = body_text(&client).await;
    assert!(text.contains("ssh -p ") && text.contains("root@127.0.0.1"), "ready-to-copy SSH command: {text}");
    screenshot(&client, "08-machines-running").await;

    // The preview: one more machine in the saved spec is one created, two unchanged, nothing saved.
    js(&client, "(t => (t.value = t.value.replace('count: 2', 'count: 3'), t.value))(document.querySelector('textarea[name=spec]'))")
        .await;
    let old_page = client.find(Locator::Css("html")).await.expect("page");
    let preview = format!("button[formaction='/namespaces/{ns}/cluster/preview']");
    client.find(Locator::Css(&preview)).await.expect("preview button").click().await.expect("click");
    while old_page.tag_name().await.is_ok() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    client.wait().for_element(Locator::Css("[data-preview]")).await.expect("the preview page");
    assert_eq!(text_of(&client, "[data-preview=created] ul").await, "node2");
    let kept = text_of(&client, "[data-preview=unchanged] ul").await;
    assert!(kept.contains("node0") && kept.contains("node1"), "{kept}");
    assert_eq!(text_of(&client, "[data-preview=removed] p.empty").await, "none");
    screenshot(&client, "08p-preview").await;
    client.goto(&format!("{base}/namespaces/{ns}")).await.expect("back");
    let saved = value_of(&client, "textarea[name=spec]").await;
    assert!(saved.contains("count: 2"), "a preview saves nothing: {saved}");

    // A spec saved with warnings says so as a warning, not as plain success.
    js(&client, "(t => (t.value = t.value.trimEnd() + '\\nextraKey: 1\\n', true))(document.querySelector('textarea[name=spec]'))")
        .await;
    submit(&client, &yaml_form).await;
    let warned = text_of(&client, "p.flash.warning").await;
    assert!(warned.contains("Warnings:") && warned.contains("extraKey"), "{warned:?}");
    client.goto(&format!("{base}/namespaces/{ns}")).await.expect("back");

    // The machines table fits the page at 1280 and 1440 px with every row's actions in view; on a
    // phone its rows are cards and nothing sticks out.
    let page_url = format!("{base}/namespaces/{ns}");
    for width in [1440, 1280] {
        set_width(&client, width).await;
        settle(&client, &page_url).await;
        assert_fits(&client, &format!("the namespace page at {width} px")).await;
        assert!(
            all_within_width(&client, "tr[data-machine] td.actions button").await,
            "row actions in view at {width} px"
        );
        assert_eq!(
            client.find_all(Locator::Css("tr[data-machine] td.actions button")).await.expect("buttons").len(),
            4
        );
        let fits = js(&client, "document.querySelector('table.machines').getBoundingClientRect().right <= document.querySelector('main').getBoundingClientRect().right").await;
        assert_eq!(fits, serde_json::json!(true), "the machines table stays in its column at {width} px");
    }
    screenshot(&client, "08a-machines-1280").await;
    set_width(&client, 390).await;
    settle(&client, &page_url).await;
    assert_fits(&client, "the namespace page on a phone").await;
    let card = js(&client, "getComputedStyle(document.querySelector('tr[data-machine=node0]')).display").await;
    assert_eq!(card, serde_json::json!("block"), "a machine is a card on a phone");
    assert!(all_within_width(&client, "tr[data-machine] td.actions button").await, "row actions in view on a phone");
    let label =
        js(&client, "document.querySelector('tr[data-machine=node0] [data-state]').closest('td').dataset.label").await;
    assert_eq!(label, serde_json::json!("State"), "each cell is labelled with its column");
    screenshot(&client, "08b-machines-390").await;
    client.goto(&format!("{page_url}/machines/node0/console")).await.expect("console");
    assert_fits(&client, "the console page on a phone").await;
    set_width(&client, 1280).await;
    client.goto(&format!("{page_url}/machines/node0/console")).await.expect("console");
    assert_fits(&client, "the console page at 1280 px").await;
    settle(&client, &page_url).await;

    // The namespace admin's breadcrumb leads to the dashboard, whose tile counts the machines.
    let crumbs = js(&client, "[...document.querySelectorAll('nav.crumbs a')].map(a => a.getAttribute('href'))").await;
    assert_eq!(crumbs, serde_json::json!(["/"]));
    let here = client.find(Locator::Css("nav.crumbs [aria-current=page]")).await.expect("current crumb");
    assert_eq!(here.text().await.expect("text"), ns);
    client.goto(&format!("{base}/")).await.expect("dashboard");
    let tile = format!("a.tile[data-namespace={ns}]");
    let running = client.find(Locator::Css(&format!("{tile} [data-count=running]"))).await.expect("running count");
    assert_eq!(running.text().await.expect("text"), "2 running");
    let stopped = client.find(Locator::Css(&format!("{tile} [data-count=stopped]"))).await.expect("stopped count");
    assert_eq!(stopped.text().await.expect("text"), "0 stopped");
    // Their use now, once the sampler has measured them (every 5 s).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let usage = loop {
        client.goto(&format!("{base}/")).await.expect("dashboard");
        if let Ok(usage) = client.find(Locator::Css(&format!("{tile} [data-usage]"))).await {
            break usage.text().await.expect("text");
        }
        assert!(std::time::Instant::now() < deadline, "the tile shows no usage");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(usage.starts_with("CPU ") && usage.contains("% · memory ") && usage.ends_with(" MB of 512 MB"), "{usage}");
    let used: f64 =
        usage.split("memory ").nth(1).and_then(|m| m.split(' ').next()).and_then(|m| m.parse().ok()).expect("MB");
    assert!(used > 0.0, "two running machines use some memory: {usage}");
    screenshot(&client, "08c-dashboard-counts").await;
    settle(&client, &page_url).await;
    let disabled =
        |path: &str| format!("document.querySelector(\"form[action='/namespaces/{ns}/{path}'] button\").disabled");
    assert_eq!(js(&client, &disabled("cluster/start")).await, serde_json::json!(true), "Start all: all run");
    assert_eq!(js(&client, &disabled("cluster/stop")).await, serde_json::json!(false), "Stop all");

    // Copy buttons are buttons, reachable by keyboard, and say that they copied.
    let copy = client.find(Locator::Css("tr[data-machine=node0] .copyable button.copy")).await.expect("copy button");
    assert_eq!(copy.tag_name().await.expect("tag"), "button");
    assert!(copy.is_displayed().await.expect("displayed"), "the copy button is shown");
    let focused = js(
        &client,
        "(() => { const b = document.querySelector('tr[data-machine=node0] button.copy'); b.focus(); \
         return document.activeElement === b; })()",
    )
    .await;
    assert_eq!(focused, serde_json::json!(true), "the copy button takes the keyboard focus");
    copy.send_keys("\u{E007}").await.expect("press Enter on the copy button");
    let said = "document.querySelector('tr[data-machine=node0] .copied[aria-live]').textContent";
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while js(&client, said).await != serde_json::json!("Copied") {
        assert!(
            std::time::Instant::now() < deadline,
            "the live region did not say Copied: {}",
            js(&client, said).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Row actions name their machine; Restart and Stop all ask first.
    for (machine, label) in [("node0", "Stop node0"), ("node0", "Restart node0"), ("node1", "Stop node1")] {
        let selector = format!("tr[data-machine={machine}] button[aria-label='{label}']");
        assert!(client.find(Locator::Css(&selector)).await.is_ok(), "{selector}");
    }
    let confirm = |path: &str| {
        format!("document.querySelector(\"form[action='/namespaces/{ns}/{path}']\").dataset.confirm || ''")
    };
    let restart = js(&client, &confirm("machines/node0/restart")).await;
    assert!(restart.as_str().is_some_and(|c| c.starts_with("Restart node0?")), "{restart}");
    let stop_all = js(&client, &confirm("cluster/stop")).await;
    assert!(stop_all.as_str().is_some_and(|c| c.contains(&format!("Stop all 2 machines of {ns}?"))), "{stop_all}");

    // Stop one machine from its row; the state follows.
    submit(&client, &format!("form[action='/namespaces/{ns}/machines/node1/stop']")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        client.goto(&format!("{base}/namespaces/{ns}")).await.expect("reload");
        let cell = client.find(Locator::Css("tr[data-machine=node1] [data-state]")).await.expect("node1");
        if cell.text().await.expect("text") == "stopped" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node1 did not stop");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    settle(&client, &format!("{base}/namespaces/{ns}")).await;
    screenshot(&client, "09-machine-stopped").await;
    client.goto(&format!("{base}/")).await.expect("dashboard");
    let counts = client.find(Locator::Css(&format!("{tile} .counts"))).await.expect("counts").text().await;
    let counts = counts.expect("text");
    assert!(counts.contains("1 running") && counts.contains("1 stopped"), "{counts}");
    settle(&client, &page_url).await;

    // A stopped machine shows no SSH command; Start all and Stop all both apply now.
    let ssh = client.find(Locator::Css("tr[data-machine=node1] td.ssh")).await.expect("ssh cell");
    let shown = ssh.text().await.expect("text");
    assert!(!shown.contains("ssh ") && shown.contains("when running"), "{shown}");
    let node0 = client.find(Locator::Css("tr[data-machine=node0] td.ssh")).await.expect("ssh cell").text().await;
    assert!(node0.expect("text").contains("ssh "), "node0 runs and shows its commands");
    assert!(client.find(Locator::Css("tr[data-machine=node1] button[aria-label='Start node1']")).await.is_ok());
    assert_eq!(js(&client, &disabled("cluster/start")).await, serde_json::json!(false), "Start all");
    assert_eq!(js(&client, &disabled("cluster/stop")).await, serde_json::json!(false), "Stop all");

    // Several machines at once: tick every row (the header's box), Start, confirm.
    client.find(Locator::Css("input[data-select-all]")).await.expect("select all").click().await.expect("tick");
    let ticked = js(&client, "document.querySelectorAll('input[name=machine]:checked').length").await;
    assert_eq!(ticked, serde_json::json!(2), "the header's box ticks every row");
    js(&client, "document.querySelector('#selected-machines select').value = 'start'").await;
    js(&client, "(window.confirm = () => true, true)").await;
    submit(&client, "form#selected-machines").await;
    let said = body_text(&client).await;
    assert!(said.contains("Start of node0, node1 started."), "{said}");
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        client.goto(&page_url).await.expect("reload");
        if text_of(&client, "tr[data-machine=node1] [data-state]").await == "running" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node1 did not start again");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    settle(&client, &page_url).await;

    // Deleting the machines asks for the namespace's name, and the server checks it.
    let delete_form = format!("form[action='/namespaces/{ns}/cluster/delete']");
    client.find(Locator::Css("details.delete-machines summary")).await.expect("summary").click().await.expect("open");
    let said = client.find(Locator::Css(&delete_form)).await.expect("form").text().await.expect("text");
    assert!(said.contains(&format!("Deletes all 2 machines of {ns}")), "{said}");
    fill(&client, &format!("{delete_form} input[name=confirm]"), "not-it").await;
    submit(&client, &delete_form).await;
    let refusal = refusal_in(&client, &delete_form).await;
    assert!(
        refusal.contains("nothing was deleted") && refusal.contains(&format!("type the namespace's name, {ns}")),
        "{refusal}"
    );
    assert_eq!(value_of(&client, &format!("{delete_form} input[name=confirm]")).await, "not-it");
    assert_eq!(client.find_all(Locator::Css("tr[data-machine]")).await.expect("rows").len(), 2, "nothing deleted");
    screenshot(&client, "10-delete-refused").await;

    // The superadmin's namespace deletion names the machines it would delete and wants the name too.
    submit(&client, "form[action='/logout']").await;
    client.wait().for_element(Locator::Css("form[action='/login']")).await.expect("signed out");
    sign_in(&client, &base, "root", ROOT_PASSWORD).await;
    client.goto(&format!("{base}/namespaces/{ns}")).await.expect("open");
    let ns_delete = format!("form[action='/namespaces/{ns}/delete']");
    let zone = client.find(Locator::Css("section#delete")).await.expect("danger zone").text().await.expect("text");
    assert!(zone.contains(&format!("Deletes the namespace {ns} and everything in it: 2 machines")), "{zone}");
    client
        .execute(
            &format!("document.querySelector(\"{ns_delete} input[name=confirm]\").removeAttribute('required')"),
            vec![],
        )
        .await
        .expect("js");
    submit(&client, &ns_delete).await;
    let refusal = refusal_in(&client, &ns_delete).await;
    assert!(refusal.contains(&format!("the namespace {ns} and all its machines")), "{refusal}");
    client.goto(&format!("{base}/namespaces/{ns}")).await.expect("the namespace is still there");
    assert_eq!(client.find_all(Locator::Css("tr[data-machine]")).await.expect("rows").len(), 2, "nothing deleted");

    // With the name typed, the machines go.
    client.find(Locator::Css("details.delete-machines summary")).await.expect("summary").click().await.expect("open");
    fill(&client, &format!("{delete_form} input[name=confirm]"), &ns).await;
    submit(&client, &delete_form).await;
    let text = body_text(&client).await;
    assert!(text.contains("started (2 machines)"), "{text}");
    client.close().await.expect("close browser");
}

/// The text of the first element `selector` matches, or "" when there is none.
async fn text_of(client: &Client, selector: &str) -> String {
    let found = js(client, &format!("(document.querySelector({selector:?}) || {{}}).textContent || ''")).await;
    found.as_str().unwrap_or_default().trim().to_owned()
}

/// Waits until `check` holds for the text of `selector`, on the page as it is (no reload), and
/// checks that the page was not reloaded meanwhile: `window.stayed` is set before and must last.
async fn live_until(client: &Client, selector: &str, what: &str, check: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let text = text_of(client, selector).await;
        assert_eq!(js(client, "window.stayed === true").await, serde_json::json!(true), "the page reloaded ({what})");
        if check(&text) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: {selector} still says {text:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_machine_page_shows_the_machine_and_follows_it_live() {
    common::docker::require_docker();
    let ns = common::docker::unique("mp");
    let _cleanup = common::docker::DockerCleanup(vec![ns.clone()]);
    let server = common::start(Backend::Sqlite).await;
    let base = server.base.clone();
    let root = server.init_root().await;
    let r = server.post("/api/v1/namespaces", &root, serde_json::json!({"name": ns})).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED);
    // Uma is a namespace user (she may start and stop machines); Sam is in no namespace.
    let uma = common::docker::user(&server, &root, "uma", &ns, "user", &common::docker::keypair("uma")).await;
    let r = server.post("/api/v1/users", &root, serde_json::json!({"login": "sam", "password": "sam-password"})).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED);
    let spec = "machines:\n- count: 1\n  spec:\n    name: box%d\n    image: flvpc/debian:12\n    portMappings:\n    - containerPort: 22\n    ignite: {cpus: 1, memory: 256MB, diskSize: 4GB}\n";
    assert_eq!(common::docker::put_spec(&server, &root, &ns, spec).await.status(), reqwest::StatusCode::OK);
    common::docker::act(&server, &root, &format!("/api/v1/namespaces/{ns}/cluster/create")).await;

    let (_driver, client) = start_browser().await;
    sign_in(&client, &base, "uma", &common::password_of("uma")).await;
    // From the machines table to the machine's page, by its name.
    let page = format!("/namespaces/{ns}/machines/box0");
    settle(&client, &format!("{base}/namespaces/{ns}")).await;
    let link = client.find(Locator::Css(&format!("tr[data-machine=box0] a[href='{page}']"))).await.expect("name link");
    assert_eq!(link.text().await.expect("text"), "box0");
    link.click().await.expect("open the machine page");
    client.wait().for_element(Locator::Css("section#machine")).await.expect("machine page");
    assert_eq!(client.current_url().await.expect("url").path(), page);

    // What it is, where to reach it, what it did.
    assert_eq!(text_of(&client, "section#machine .title-row [data-state]").await, "running");
    let facts = text_of(&client, "dl.facts").await;
    for said in ["container", "flvpc/debian:12", "256 MB", "4 GB", "not enforced", "Up since"] {
        assert!(facts.contains(said), "{said:?} in {facts}");
    }
    assert!(!text_of(&client, "dl.facts [data-ip]").await.starts_with('—'), "an address: {facts}");
    let ssh = client.find(Locator::Css("section#machine [data-ssh]")).await.expect("ssh commands");
    assert!(ssh.is_displayed().await.expect("shown"), "SSH commands while it runs");
    let commands = ssh.text().await.expect("text");
    assert!(commands.contains("ssh -J uma@127.0.0.1:") && commands.contains(&format!("root@box0.{ns}")), "{commands}");
    assert!(commands.contains("ssh -p "), "the direct command, through the published port: {commands}");
    assert!(client.find(Locator::Css(&format!("a[href='{page}/console']"))).await.is_ok(), "a link to the console");
    assert!(text_of(&client, "section#machine table.operations").await.contains("cluster.create"));
    let restart =
        js(&client, &format!("document.querySelector(\"form[action='{page}/restart']\").dataset.confirm")).await;
    assert!(restart.as_str().is_some_and(|c| c.starts_with("Restart box0?")), "the table's confirmation: {restart}");

    // The graphs: once the sampler has two samples, each chart has numbered axes and says its latest value.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while client.find_all(Locator::Css("svg.chart")).await.expect("charts").len() < 3 {
        assert!(std::time::Instant::now() < deadline, "no graphs drawn: {}", text_of(&client, ".charts").await);
        tokio::time::sleep(Duration::from_secs(2)).await;
        client.goto(&format!("{base}{page}")).await.expect("reload");
    }
    let labels = |class: &str| {
        format!("[...document.querySelectorAll('svg.chart text.{class}')].map(t => t.textContent.trim()).join('|')")
    };
    let x = js(&client, &labels("x-label")).await;
    let y = js(&client, &labels("y-label")).await;
    let (x, y) = (x.as_str().unwrap_or_default(), y.as_str().unwrap_or_default());
    assert!(x.contains("now") && x.contains(" s"), "time axis: {x}");
    assert!(y.contains("0 %") && y.contains("0 MB") && y.contains("/s"), "value axes: {y}");
    let numbered = y.split('|').filter(|l| l.chars().next().is_some_and(|c| c.is_ascii_digit())).count();
    assert!(numbered >= 6, "every value axis has numbers: {y}");
    let latest = js(&client, "[...document.querySelectorAll('[data-latest]')].map(t => t.textContent).join('|')").await;
    let latest = latest.as_str().unwrap_or_default();
    assert!(latest.contains(" %|") && latest.contains(" MB|") && latest.contains("in "), "latest values: {latest}");
    // What the page's script swaps in every 30 s: the same charts, drawn from the newest points.
    let fragment = fetch_text(&client, &format!("{page}/charts")).await;
    assert!(fragment.starts_with("<div class=\"charts\"") && fragment.matches("<svg").count() >= 3, "{fragment}");
    screenshot(&client, "11-machine-page").await;
    client.execute("document.querySelector('table.operations').scrollIntoView()", vec![]).await.expect("scroll");
    screenshot(&client, "11b-machine-page-console-operations").await;
    // On a phone the page's own content fits the width (the charts and facts wrap, commands scroll
    // inside their boxes); the page frame's navigation is the layout's part.
    client.set_window_size(390, 844).await.expect("phone width");
    client.goto(&format!("{base}{page}")).await.expect("reload");
    let fits = js(
        &client,
        "(() => { const s = document.querySelector('section#machine'); \
         return [...s.querySelectorAll('*')].filter(e => e.getBoundingClientRect().right > window.innerWidth + 1 \
         && !e.closest('pre, .copyable, svg')).map(e => e.tagName + '.' + e.className + ' ' \
         + Math.round(e.getBoundingClientRect().right) + '/' + window.innerWidth); })()",
    )
    .await;
    screenshot(&client, "11c-machine-page-390").await;
    assert_eq!(fits, serde_json::json!([]), "what sticks out of a 390 px window");
    client.set_window_size(1280, 900).await.expect("desktop width");
    client.goto(&format!("{base}{page}")).await.expect("reload");

    // Stop, pressed on the page: answered on this page, and the state follows without a reload.
    submit(&client, &format!("form[action='{page}/stop']")).await;
    assert_eq!(client.current_url().await.expect("url").path(), page, "back on the machine page");
    assert!(body_text(&client).await.contains("machine.stop of box0 started."));
    client.execute("window.stayed = true;", vec![]).await.expect("mark the page");
    live_until(&client, "section#machine .title-row [data-state]", "the stop shows", |s| s == "stopped").await;
    live_until(&client, "section#machine tr[data-operation-row] [data-op-state]", "the stop operation ends", |s| {
        s == "succeeded"
    })
    .await;
    let ssh_shown = js(&client, "!document.querySelector('section#machine [data-ssh]').hidden").await;
    assert_eq!(ssh_shown, serde_json::json!(false), "no SSH commands once stopped");
    assert!(client.find(Locator::Css(&format!("form[action='{page}/start']"))).await.is_ok(), "Start offered");
    screenshot(&client, "12-machine-stopped").await;

    // Started elsewhere (the API) while the page stays open: it follows that too.
    client.goto(&format!("{base}{page}")).await.expect("reload");
    client.execute("window.stayed = true;", vec![]).await.expect("mark the page");
    assert_eq!(text_of(&client, "section#machine .title-row [data-state]").await, "stopped");
    common::docker::act(&server, &uma, &format!("/api/v1/namespaces/{ns}/machines/box0/start")).await;
    live_until(&client, "section#machine .title-row [data-state]", "the start shows", |s| s == "running").await;
    live_until(&client, "section#machine [data-ssh]", "SSH commands come back", |s| s.contains("ssh -J")).await;
    let ssh_shown = js(&client, "!document.querySelector('section#machine [data-ssh]').hidden").await;
    assert_eq!(ssh_shown, serde_json::json!(true), "SSH commands once running again");

    // Someone outside the namespace gets the panel's 404 page, without the machine.
    submit(&client, "form[action='/logout']").await;
    client.wait().for_element(Locator::Css("form[action='/login']")).await.expect("signed out");
    sign_in(&client, &base, "sam", "sam-password").await;
    client.goto(&format!("{base}{page}")).await.expect("open");
    let text = body_text(&client).await;
    assert!(text.contains("not a member") && !text.contains("box0"), "{text}");
    assert!(client.find(Locator::Css("section#machine")).await.is_err());
    client.close().await.expect("close browser");
}

/// The text of each row of the browser terminal, trimmed.
async fn terminal_rows(client: &Client) -> Vec<String> {
    let rows =
        js(client, "[...document.querySelectorAll('#terminal .xterm-rows > div')].map(r => r.textContent.trim())")
            .await;
    rows.as_array().map(|rows| rows.iter().filter_map(|r| r.as_str().map(str::to_owned)).collect()).unwrap_or_default()
}

/// Over HTTPS, as `flvpc serve` serves by default (its self-signed certificate): the sign-in, the
/// terminal's WebSocket (wss:) and the live event stream all go through the TLS listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_user_runs_a_command_in_the_browser_terminal() {
    common::docker::require_docker();
    let ns = common::docker::unique("bt");
    let _cleanup = common::docker::DockerCleanup(vec![ns.clone()]);
    let (server, _data) = common::start_with_terminal_tls(Backend::Sqlite).await;
    let base = server.base.clone();
    assert!(base.starts_with("https://"), "{base}");
    let root = server.init_root().await;
    let r = server.post("/api/v1/namespaces", &root, serde_json::json!({"name": ns})).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED);
    // Uma is a namespace user; Sam is in no namespace.
    common::docker::user(&server, &root, "uma", &ns, "user", &common::docker::keypair("uma")).await;
    let r = server.post("/api/v1/users", &root, serde_json::json!({"login": "sam", "password": "sam-password"})).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED);
    let spec = "machines:\n- count: 1\n  spec:\n    name: box%d\n    image: flvpc/debian:12\n    ignite: {cpus: 1, memory: 256MB, diskSize: 4GB}\n";
    assert_eq!(common::docker::put_spec(&server, &root, &ns, spec).await.status(), reqwest::StatusCode::OK);
    common::docker::act(&server, &root, &format!("/api/v1/namespaces/{ns}/cluster/create")).await;

    let (_driver, client) = start_browser().await;
    sign_in(&client, &base, "uma", &common::password_of("uma")).await;
    // From the machine's page to its terminal.
    let machine = format!("/namespaces/{ns}/machines/box0");
    client.goto(&format!("{base}{machine}")).await.expect("machine page");
    let link = client.find(Locator::Css("a[data-terminal-link]")).await.expect("a terminal link on the machine page");
    link.click().await.expect("open the terminal");
    client.wait().for_element(Locator::Css("#terminal .xterm-rows")).await.expect("xterm.js drew the terminal");
    assert_eq!(client.current_url().await.expect("url").path(), format!("{machine}/terminal"));

    // Type `hostname` and Enter; the machine's name comes back on a line of its own (the prompt
    // names it too, so a row that is exactly the name is the command's output). The machine's sshd
    // may still be starting: a closed terminal is opened again by reloading, as a person would.
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    loop {
        let status = text_of(&client, "#terminal-status").await;
        if status.starts_with("Connected") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the terminal did not connect: {status}");
        if status.starts_with("Disconnected") {
            tokio::time::sleep(Duration::from_secs(1)).await;
            client.refresh().await.expect("reload");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let input = client.find(Locator::Css("#terminal .xterm-helper-textarea")).await.expect("xterm's input");
    input.send_keys("hostname\u{E007}").await.expect("type");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = terminal_rows(&client).await;
        if rows.iter().any(|row| row == "box0") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no output of hostname: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // xterm.js's own styles reach the page despite the CSP (copied into constructed sheets).
    let sheets = js(&client, "document.adoptedStyleSheets.length").await;
    assert!(sheets.as_u64().is_some_and(|n| n > 0), "xterm's styles are applied: {sheets}");
    screenshot(&client, "13-terminal").await;

    // Leaving the page closes the terminal; its session is in the audit log with bytes each way.
    client.goto(&format!("{base}{machine}")).await.expect("leave the terminal");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = server.get("/api/v1/audit?limit=100", &root).await;
        let records = r.body.as_array().cloned().unwrap_or_default();
        let session =
            records.iter().find(|e| e["action"] == "machine.terminal" && e["actor"] == "uma" && e["outcome"] == "ok");
        if let Some(session) = session {
            assert_eq!(session["target"], format!("{ns}/box0"));
            let detail = session["detail"].as_str().unwrap_or_default();
            assert!(
                !detail.contains("up=0B") && !detail.contains("down=0B") && detail.contains("duration="),
                "{detail}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no terminal session in the audit log: {records:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The event stream over TLS: the stop below reaches the page live.
    assert_eq!(client.current_url().await.expect("url").scheme(), "https");
    js(&client, "(window.seen = [], new EventSource('/api/v1/events').onmessage = m => window.seen.push(m.data), 0)")
        .await;

    // A stopped machine's terminal page says why there is no shell, and what to do.
    common::docker::act(&server, &root, &format!("/api/v1/namespaces/{ns}/machines/box0/stop")).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let seen = js(&client, "window.seen").await;
        let stopped = seen.as_array().into_iter().flatten().filter_map(|m| m.as_str()).any(|m| {
            serde_json::from_str::<serde_json::Value>(m)
                .is_ok_and(|e| e["type"] == "machine" && e["name"] == "box0" && e["state"] == "stopped")
        });
        if stopped {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no live stop event over TLS: {seen}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    client.goto(&format!("{base}{machine}/terminal")).await.expect("open");
    let status = text_of(&client, "#terminal-status").await;
    assert!(status.contains("not running") && status.contains("start it"), "{status}");
    assert!(client.find(Locator::Css("#terminal")).await.is_err(), "no terminal box for a stopped machine");

    // Someone outside the namespace gets the panel's 404 page, and no terminal.
    submit(&client, "form[action='/logout']").await;
    client.wait().for_element(Locator::Css("form[action='/login']")).await.expect("signed out");
    sign_in(&client, &base, "sam", "sam-password").await;
    client.goto(&format!("{base}{machine}/terminal")).await.expect("open");
    let text = body_text(&client).await;
    assert!(text.contains("not a member") && !text.contains("box0"), "{text}");
    assert!(client.find(Locator::Css("#terminal")).await.is_err());
    client.close().await.expect("close browser");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn superadmin_sets_up_a_team_and_the_user_sees_only_their_role() {
    let server = common::start(Backend::Sqlite).await;
    let base = server.base.clone();
    let (_driver, client) = start_browser().await;

    // Before any superadmin exists, the sign-in page explains how to make one.
    client.goto(&format!("{base}/login")).await.expect("open");
    let text = body_text(&client).await;
    assert!(text.contains("flvpc admin init --login admin --password-stdin"), "{text}");
    assert!(!text.to_lowercase().contains("register"), "no registration page, ever");
    screenshot(&client, "01-no-superadmin").await;

    let root = flvpc_model::Login::parse("root").expect("login");
    server.state.store.init_superadmin(&root, ROOT_PASSWORD).await.expect("init");

    // A wrong password is refused with a message.
    client.goto(&format!("{base}/login")).await.expect("open");
    fill(&client, "input[name=login]", "root").await;
    fill(&client, "input[name=password]", "wrong-password").await;
    submit(&client, "form[action='/login']").await;
    let text = body_text(&client).await;
    assert!(text.contains("wrong login or password"), "{text}");

    sign_in(&client, &base, "root", ROOT_PASSWORD).await;
    screenshot(&client, "02-dashboard-empty").await;
    let text = body_text(&client).await;
    assert!(text.contains("No namespaces yet"), "{text}");

    // Create a namespace: lands on its page with a confirmation.
    client.goto(&format!("{base}/admin/namespaces")).await.expect("open");
    fill(&client, "input[name=name]", "team1").await;
    submit(&client, "form[action='/admin/namespaces']").await;
    client.wait().for_element(Locator::Css("div.title-row")).await.expect("namespace page");
    assert_eq!(client.current_url().await.expect("url").path(), "/namespaces/team1");
    assert!(body_text(&client).await.contains("Namespace team1 created"));

    // An invalid name gets a clear message and creates nothing.
    client.goto(&format!("{base}/admin/namespaces")).await.expect("open");
    client.execute("document.querySelector('input[name=name]').removeAttribute('pattern')", vec![]).await.expect("js");
    fill(&client, "input[name=name]", "Bad_Name").await;
    submit(&client, "form[action='/admin/namespaces']").await;
    let text = body_text(&client).await;
    assert!(text.contains("name: must start with a lowercase letter"), "{text}");

    // Create a user and make them a namespace user of team1.
    client.goto(&format!("{base}/admin/users")).await.expect("open");
    fill(&client, "form[action='/admin/users'] input[name=login]", "eve").await;
    fill(&client, "form[action='/admin/users'] input[name=password]", "eve-password").await;
    submit(&client, "form[action='/admin/users']").await;
    assert!(body_text(&client).await.contains("User eve created"));
    screenshot(&client, "03-users").await;

    // The same login again: a plain sentence next to the form, which keeps the login typed.
    fill(&client, "form[action='/admin/users'] input[name=login]", "eve").await;
    fill(&client, "form[action='/admin/users'] input[name=password]", "eve-password").await;
    submit(&client, "form[action='/admin/users']").await;
    let refusal = refusal_in(&client, "form[action='/admin/users']").await;
    assert!(refusal.contains("a user named \"eve\" already exists"), "{refusal}");
    assert!(!body_text(&client).await.contains("Login("), "no Rust debug text");
    assert_eq!(value_of(&client, "form[action='/admin/users'] input[name=login]").await, "eve");
    assert_eq!(value_of(&client, "form[action='/admin/users'] input[name=password]").await, "", "never a password");
    screenshot(&client, "03b-user-refused").await;

    client.goto(&format!("{base}/namespaces/team1")).await.expect("open");
    pick(&client, "form[action='/namespaces/team1/members'] select[name=login] option[value=eve]").await;
    submit(&client, "form.card[action='/namespaces/team1/members']").await;
    let text = body_text(&client).await;
    assert!(text.contains("eve added as user"), "{text}");
    assert!(text.contains("Resources") && text.contains("unlimited"), "quota table: {text}");
    screenshot(&client, "04-namespace-superadmin").await;

    // Without a quota, the capacity page says so in words rather than inventing a limit.
    client.goto(&format!("{base}/admin/capacity")).await.expect("open");
    let text = body_text(&client).await;
    assert!(text.contains("0 · no quota") && !text.contains("0.0 / 1"), "{text}");

    // Quotas are set on the namespace page; the capacity page shows bars.
    client.goto(&format!("{base}/namespaces/team1")).await.expect("open");
    fill(&client, "form[action='/namespaces/team1/quota'] input[name=machines]", "4").await;
    submit(&client, "form[action='/namespaces/team1/quota']").await;
    assert!(body_text(&client).await.contains("Quota set."));
    client.goto(&format!("{base}/admin/capacity")).await.expect("open");
    let text = body_text(&client).await;
    assert!(text.contains("Whole host") && text.contains("CPUs promised to running machines"), "{text}");
    assert!(text.contains("Machines\n0 / 4") || text.contains("Machines 0 / 4"), "machine counts are whole: {text}");
    assert!(!text.contains("0.0 / 4"), "{text}");
    assert!(client.find(Locator::Css(".meter progress")).await.is_ok(), "bars are drawn");
    screenshot(&client, "04b-capacity").await;

    // The audit log says what the quota became in words.
    client.goto(&format!("{base}/admin/audit")).await.expect("open");
    let text = body_text(&client).await;
    assert!(text.contains("namespace.quota machines 4, CPUs unlimited, memory unlimited"), "{text}");
    assert!(!text.contains("Quota {") && !text.contains("Some("), "no Rust debug text: {text}");

    // Sign out, sign in as eve.
    submit(&client, "form[action='/logout']").await;
    client.wait().for_element(Locator::Css("form[action='/login']")).await.expect("signed out");
    sign_in(&client, &base, "eve", "eve-password").await;
    screenshot(&client, "05-dashboard-user").await;
    let text = body_text(&client).await;
    assert!(text.contains("My namespaces"), "{text}");
    assert!(text.contains("team1"), "{text}");
    assert!(text.contains("Add an SSH key"), "{text}");
    let nav = client.find(Locator::Css("header.top nav")).await.expect("nav").text().await.expect("nav text");
    assert!(!nav.contains("Users") && !nav.contains("Audit"), "a namespace user sees no admin menu: {nav}");

    // Eve's namespace page: her role, no member management, no deletion.
    client.goto(&format!("{base}/namespaces/team1")).await.expect("open");
    let text = body_text(&client).await;
    assert!(text.contains("user"), "{text}");
    assert!(!text.contains("Delete namespace"), "{text}");
    assert!(
        client.find(Locator::Css("form[action='/namespaces/team1/members']")).await.is_err(),
        "no member form for a user"
    );
    screenshot(&client, "06-namespace-user").await;

    // Admin pages are refused; an unknown namespace looks like any other missing one.
    client.goto(&format!("{base}/admin/users")).await.expect("open");
    let text = body_text(&client).await;
    assert!(text.contains("your role does not allow this"), "{text}");
    client.goto(&format!("{base}/namespaces/other")).await.expect("open");
    assert!(body_text(&client).await.contains("not a member"), "404 page for a namespace she is not in");

    // A key that is not one is refused next to the form, which keeps the name and the text.
    let key = common::ssh_keygen("ed25519", None, "eve@laptop");
    client.goto(&format!("{base}/account")).await.expect("open");
    let keys_form = "form[action='/account/keys']";
    fill(&client, &format!("{keys_form} input[name=name]"), "laptop").await;
    fill(&client, &format!("{keys_form} textarea[name=public_key]"), "ssh-ed25519 not-a-key eve@laptop").await;
    submit(&client, keys_form).await;
    let refusal = refusal_in(&client, keys_form).await;
    assert!(!refusal.is_empty(), "the refusal says why");
    assert_eq!(value_of(&client, &format!("{keys_form} input[name=name]")).await, "laptop");
    assert_eq!(
        value_of(&client, &format!("{keys_form} textarea[name=public_key]")).await,
        "ssh-ed25519 not-a-key eve@laptop"
    );
    let focused = js(&client, "document.activeElement.name").await;
    assert_eq!(focused, serde_json::json!("public_key"), "the cursor is in the field the refusal names");
    screenshot(&client, "06b-key-refused").await;

    // Eve adds her SSH key in the panel; the fingerprint is shown.
    client.goto(&format!("{base}/account")).await.expect("open");
    fill(&client, "form[action='/account/keys'] input[name=name]", "laptop").await;
    fill(&client, "form[action='/account/keys'] textarea[name=public_key]", &key).await;
    submit(&client, "form[action='/account/keys']").await;
    let text = body_text(&client).await;
    assert!(text.contains("Key laptop added (SHA256:"), "{text}");
    screenshot(&client, "07-account").await;

    // Back as the superadmin: deleting team1 says what goes and needs its name typed.
    submit(&client, "form[action='/logout']").await;
    client.wait().for_element(Locator::Css("form[action='/login']")).await.expect("signed out");
    sign_in(&client, &base, "root", ROOT_PASSWORD).await;
    client.goto(&format!("{base}/namespaces/team1")).await.expect("open");
    let zone = client.find(Locator::Css("section#delete")).await.expect("danger zone").text().await.expect("text");
    assert!(zone.contains("Deletes the namespace team1 and everything in it: 0 machines"), "{zone}");
    fill(&client, "form[action='/namespaces/team1/delete'] input[name=confirm]", "team2").await;
    submit(&client, "form[action='/namespaces/team1/delete']").await;
    let refusal = refusal_in(&client, "form[action='/namespaces/team1/delete']").await;
    assert!(refusal.contains("type the namespace's name, team1"), "{refusal}");
    let confirm = client.find(Locator::Css("form[action='/namespaces/team1/delete'] input[name=confirm]")).await;
    let confirm = confirm.expect("confirm field");
    confirm.clear().await.expect("clear");
    confirm.send_keys("team1").await.expect("type");
    submit(&client, "form[action='/namespaces/team1/delete']").await;
    assert_eq!(client.current_url().await.expect("url").path(), "/admin/namespaces");
    assert!(body_text(&client).await.contains("Namespace team1 deleted."));

    client.close().await.expect("close browser");
}

/// Fetches `path` in the page (with its session) and returns the body as text.
async fn fetch_text(client: &Client, path: &str) -> String {
    let script = "const [path, done] = arguments; fetch(path, {credentials: 'same-origin'}).then(r => r.text()).then(done, e => done('fetch failed: ' + e));";
    let value =
        client.execute_async(script, vec![serde_json::json!(path)]).await.unwrap_or_else(|e| panic!("{path}: {e}"));
    value.as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_fits_1280_px_and_a_phone_with_navigation_and_a_filtered_audit_log() {
    let server = common::start(Backend::Sqlite).await;
    let base = server.base.clone();
    let root = server.init_root().await;
    let r = server.post("/api/v1/namespaces", &root, serde_json::json!({"name": "team1"})).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED);
    let r = server.post("/api/v1/users", &root, serde_json::json!({"login": "ann", "password": "ann-password"})).await;
    assert_eq!(r.status, reqwest::StatusCode::CREATED);
    let r = server.post("/api/v1/users", &root, serde_json::json!({"login": "ann", "password": "ann-password"})).await;
    assert_eq!(r.status, reqwest::StatusCode::CONFLICT, "a refusal for the log");

    let (_driver, client) = start_browser().await;
    set_width(&client, 390).await;
    client.goto(&format!("{base}/login")).await.expect("open");
    assert_fits(&client, "the sign-in page on a phone").await;
    set_width(&client, 1280).await;
    // A failed sign-in whose login a spreadsheet would run as a formula.
    client.goto(&format!("{base}/login")).await.expect("open");
    fill(&client, "input[name=login]", "=HYPERLINK(\"x\")").await;
    fill(&client, "input[name=password]", "wrong-password").await;
    submit(&client, "form[action='/login']").await;
    sign_in(&client, &base, "root", ROOT_PASSWORD).await;

    // Every page: no sideways scrolling at 1440, 1280 and 390 px; its own menu item is current.
    let pages = [
        ("/", Some("Dashboard")),
        ("/admin/namespaces", Some("Namespaces")),
        ("/admin/users", Some("Users")),
        ("/admin/capacity", Some("Capacity")),
        ("/admin/audit", Some("Audit log")),
        ("/account", Some("Account")),
        ("/namespaces/team1", None),
    ];
    let mut violations = Vec::new();
    for width in [1440, 1280, 390] {
        set_width(&client, width).await;
        for (path, current) in pages {
            client.goto(&format!("{base}{path}")).await.expect("open");
            assert_fits(&client, &format!("{path} at {width} px")).await;
            if width != 1440 {
                violations.extend(accessibility_violations(&client, &format!("{path} at {width} px")).await);
            }
            let marked =
                js(&client, "[...document.querySelectorAll('header.top [aria-current=page]')].map(a => a.textContent)")
                    .await;
            let want: Vec<&str> = current.into_iter().collect();
            assert_eq!(marked, serde_json::json!(want), "the current menu item of {path}");
        }
    }

    assert!(violations.is_empty(), "axe-core, serious or critical:\n{}", violations.join("\n"));

    // On a phone the menu folds behind a button that reaches every item.
    client.goto(&format!("{base}/admin/users")).await.expect("open");
    assert!(shown(&client, "header.top .menu-toggle").await, "the menu button is shown on a phone");
    for item in ["a[href='/admin/audit']", "a[href='/account']", "form[action='/logout'] button"] {
        assert!(!shown(&client, &format!("header.top {item}")).await, "{item} is folded away");
    }
    let toggle = client.find(Locator::Css("header.top .menu-toggle")).await.expect("menu button");
    assert_eq!(toggle.attr("aria-expanded").await.expect("attr").as_deref(), Some("false"));
    toggle.click().await.expect("open the menu");
    assert_eq!(toggle.attr("aria-expanded").await.expect("attr").as_deref(), Some("true"));
    for item in ["a[href='/admin/audit']", "a[href='/account']", "form[action='/logout'] button"] {
        assert!(all_within_width(&client, &format!("header.top {item}")).await, "{item} is reachable on a phone");
    }
    // Users are cards: one per row, labelled cells, the header row kept for screen readers only.
    let display = js(&client, "getComputedStyle(document.querySelector('main tbody tr')).display").await;
    assert_eq!(display, serde_json::json!("block"));
    let label = js(&client, "document.querySelector('main tbody td').dataset.label").await;
    assert_eq!(label, serde_json::json!("Login"));
    screenshot(&client, "11-phone-menu-open").await;
    client.find(Locator::Css("header.top a[href='/admin/audit']")).await.expect("item").click().await.expect("click");
    client.wait().for_element(Locator::Css("form.audit-filter")).await.expect("audit page");
    assert_eq!(client.current_url().await.expect("url").path(), "/admin/audit");
    screenshot(&client, "12-phone-audit").await;

    // The namespace page: a breadcrumb back to the namespaces, tabs to its sections.
    set_width(&client, 1280).await;
    client.goto(&format!("{base}/namespaces/team1")).await.expect("open");
    let crumbs = js(&client, "[...document.querySelectorAll('nav.crumbs a')].map(a => a.getAttribute('href'))").await;
    assert_eq!(crumbs, serde_json::json!(["/", "/admin/namespaces"]));
    let tabs = js(&client, "[...document.querySelectorAll('nav.tabs a')].map(a => [a.textContent, !!document.getElementById(a.getAttribute('href').slice(1))])").await;
    assert_eq!(
        tabs,
        serde_json::json!([
            ["Machines", true],
            ["Spec", true],
            ["Resources", true],
            ["Members", true],
            ["Activity", true]
        ]),
        "every tab leads to its section"
    );
    client.find(Locator::Css("nav.tabs a[href='#members']")).await.expect("tab").click().await.expect("click");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while js(&client, "document.querySelector('nav.tabs a[aria-current]')?.dataset.tab").await
        != serde_json::json!("members")
    {
        assert!(std::time::Instant::now() < deadline, "the Members tab is not marked current");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let in_view = js(&client, "(() => { const r = document.getElementById('members').getBoundingClientRect(); return r.top >= 0 && r.top < innerHeight; })()").await;
    assert_eq!(in_view, serde_json::json!(true), "the Members section is shown");
    screenshot(&client, "13-namespace-tabs").await;

    // The audit log, filtered on the server: refusals only.
    client.goto(&format!("{base}/admin/audit")).await.expect("open");
    pick(&client, "form.audit-filter select[name=outcome] option[value=error]").await;
    submit(&client, "form.audit-filter").await;
    let url = client.current_url().await.expect("url");
    assert!(url.query().is_some_and(|q| q.contains("outcome=error")), "{url}");
    let outcomes = js(
        &client,
        "[...document.querySelectorAll('table.audit tbody tr td:last-child')].map(td => td.textContent.trim())",
    )
    .await;
    let outcomes: Vec<String> = serde_json::from_value(outcomes).expect("list");
    let api = server.get("/api/v1/audit?outcome=error&limit=1000", &root).await.body;
    let api = api.as_array().expect("list").clone();
    assert_eq!(outcomes.len(), api.len(), "the page shows the records the API gives for the same filter: {outcomes:?}");
    assert!(
        outcomes.contains(&"conflict".to_owned()) && outcomes.contains(&"wrong_credentials".to_owned()),
        "{outcomes:?}"
    );
    assert!(outcomes.iter().all(|o| o != "ok"), "{outcomes:?}");
    screenshot(&client, "14-audit-filtered").await;

    // Filters combine and are kept in the form; the export links carry them.
    client.goto(&format!("{base}/admin/audit?user=root&action=user.create&outcome=error")).await.expect("open");
    let rows = client.find_all(Locator::Css("table.audit tbody tr")).await.expect("rows");
    assert_eq!(rows.len(), 1, "root's refused user.create");
    assert_eq!(value_of(&client, "form.audit-filter input[name=user]").await, "root");
    assert_eq!(value_of(&client, "form.audit-filter input[name=action]").await, "user.create");

    // Exports: the filtered records as CSV (formulas made text) and JSON.
    client.goto(&format!("{base}/admin/audit?action=auth.login&outcome=error")).await.expect("open");
    let csv_href =
        js(&client, "document.querySelector('a[href^=\"/admin/audit/export?format=csv\"]').getAttribute('href')").await;
    let csv_href = csv_href.as_str().expect("href").to_owned();
    assert!(csv_href.contains("action=auth.login") && csv_href.contains("outcome=error"), "{csv_href}");
    let csv = fetch_text(&client, &csv_href).await;
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.first().copied(), Some("id,at,actor,action,target,namespace,source,outcome,detail"), "{csv}");
    assert_eq!(lines.len(), 2, "one refused sign-in: {csv}");
    assert!(lines[1].contains("\"'=HYPERLINK(\"\"x\"\")\""), "a formula is exported as text: {csv}");
    assert!(lines[1].contains("\"auth.login\"") && lines[1].contains("\"wrong_credentials\""), "{csv}");
    let json_href = csv_href.replace("format=csv", "format=json");
    let exported: serde_json::Value =
        serde_json::from_str(&fetch_text(&client, &json_href).await).expect("JSON export");
    let api = server.get("/api/v1/audit?action=auth.login&outcome=error", &root).await.body;
    assert_eq!(exported, api, "the JSON export is the API's answer for the same filter");

    // A time range with nothing in it says so; a time that is not one is refused next to the filter.
    client.goto(&format!("{base}/admin/audit?since=2000-01-01&until=2000-01-02")).await.expect("open");
    assert!(body_text(&client).await.contains("No record matches this filter"));
    client.goto(&format!("{base}/admin/audit?since=yesterday")).await.expect("open");
    let refusal = client.find(Locator::Css("form.audit-filter [role=alert]")).await.expect("refusal in the filter");
    let refusal = refusal.text().await.expect("text");
    assert!(refusal.contains("since") && refusal.contains("2026-12-01"), "{refusal}");
    assert_eq!(
        value_of(&client, "form.audit-filter input[name=since]").await,
        "",
        "a datetime input shows no invalid text"
    );
    assert_eq!(
        js(&client, "document.activeElement.name").await,
        serde_json::json!("since"),
        "the cursor is in the field named"
    );
    let status = client
        .execute_async("fetch('/admin/audit?since=yesterday').then(r => arguments[0](r.status))", vec![])
        .await
        .expect("fetch");
    assert_eq!(status, serde_json::json!(422), "the refused filter's status");

    // Outside the superadmin, the export is refused like the page.
    submit(&client, "form[action='/logout']").await;
    sign_in(&client, &base, "ann", "ann-password").await;
    let refused = fetch_text(&client, "/admin/audit/export?format=csv").await;
    assert!(refused.contains("your role does not allow this") && !refused.contains("auth.login"), "{refused}");
    client.close().await.expect("close browser");
}
