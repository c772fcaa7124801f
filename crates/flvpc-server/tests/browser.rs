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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
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
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
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

async fn screenshot(client: &Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    let _ = std::fs::create_dir_all(&dir);
    if let Ok(png) = client.screenshot().await {
        let _ = std::fs::write(dir.join(format!("{name}.png")), png);
    }
}

async fn fill(client: &Client, selector: &str, value: &str) {
    let field = client.find(Locator::Css(selector)).await.unwrap_or_else(|e| panic!("field {selector}: {e}"));
    field.send_keys(value).await.expect("type");
}

async fn submit(client: &Client, form: &str) {
    let button = client
        .find(Locator::Css(&format!("{form} button[type=submit]")))
        .await
        .unwrap_or_else(|e| panic!("button in {form}: {e}"));
    button.click().await.expect("click");
}

async fn body_text(client: &Client) -> String {
    client.find(Locator::Css("body")).await.expect("body").text().await.expect("text")
}

async fn sign_in(client: &Client, base: &str, login: &str, password: &str) {
    client.goto(&format!("{base}/login")).await.expect("open sign-in");
    fill(client, "input[name=login]", login).await;
    fill(client, "input[name=password]", password).await;
    submit(client, "form[action='/login']").await;
    client.wait().for_element(Locator::Css("header.top")).await.expect("signed in");
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

    client.goto(&format!("{base}/namespaces/team1")).await.expect("open");
    client
        .find(Locator::Css("form[action='/namespaces/team1/members'] select[name=login] option[value=eve]"))
        .await
        .expect("eve offered")
        .click()
        .await
        .expect("select eve");
    submit(&client, "form.card[action='/namespaces/team1/members']").await;
    let text = body_text(&client).await;
    assert!(text.contains("eve added as user"), "{text}");
    screenshot(&client, "04-namespace-superadmin").await;

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

    // Eve adds her SSH key in the panel; the fingerprint is shown.
    let key = common::ssh_keygen("ed25519", None, "eve@laptop");
    client.goto(&format!("{base}/account")).await.expect("open");
    fill(&client, "form[action='/account/keys'] input[name=name]", "laptop").await;
    fill(&client, "form[action='/account/keys'] textarea[name=public_key]", &key).await;
    submit(&client, "form[action='/account/keys']").await;
    let text = body_text(&client).await;
    assert!(text.contains("Key laptop added (SHA256:"), "{text}");
    screenshot(&client, "07-account").await;

    client.close().await.expect("close browser");
}
