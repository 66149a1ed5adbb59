//! `model.allowed_roots`: 0x30/0x34 may only move the image and model folders to
//! folders under the allowed roots (default: the config file's folder, the image
//! folder and the model folder), so a client cannot point the server at `/etc`.

mod common;

use common::{first_code, TestServer};
use serde_json::json;

fn folder_request(cmd: u8, path: &str) -> String {
    json!({"cmd": cmd, "request_data": [path]}).to_string()
}

#[test]
fn default_roots_refuse_folders_outside_the_config_folder() {
    let server = TestServer::start(&[]);
    let mut c = server.client();
    let images = server.images_dir().canonicalize().unwrap();
    let outside = tempfile::tempdir().unwrap();
    for cmd in [0x30, 0x34] {
        for path in ["/etc".to_string(), outside.path().display().to_string()] {
            let v = c.request(&folder_request(cmd, &path));
            assert_eq!(v["cmd"], json!(cmd + 1), "{v}");
            assert_eq!(v["response_data"][0]["result"], json!(1), "{v}");
            assert_eq!(first_code(&v), 1, "{path}: {v}");
        }
    }
    // Nothing changed.
    let v = c.request(r#"{"cmd": 0x32, "request_data": null}"#);
    assert_eq!(
        v["response_data"][0]["file_name"],
        json!(images.display().to_string())
    );
    let v = c.request(r#"{"cmd": 0x24, "request_data": null}"#);
    assert_eq!(v["response_data"][0]["result"], json!(2), "{v}");
    // A folder inside the config's folder is allowed.
    std::fs::create_dir(server.dir.path().join("line3")).unwrap();
    let v = c.request(&folder_request(0x30, "line3"));
    assert_eq!(v["response_data"][0]["result"], json!(2), "{v}");
}

#[test]
fn configured_roots_replace_the_default() {
    let photos = tempfile::tempdir().unwrap();
    std::fs::create_dir(photos.path().join("line3")).unwrap();
    let roots = serde_json::to_string(&[photos.path().display().to_string()]).unwrap();
    let server = TestServer::start(&[("model.allowed_roots", &roots)]);
    let mut c = server.client();
    let inside = photos.path().join("line3").canonicalize().unwrap();
    let v = c.request(&folder_request(0x30, &inside.display().to_string()));
    assert_eq!(v["response_data"][0]["result"], json!(2), "{v}");
    assert_eq!(
        v["response_data"][0]["file_name"],
        json!(inside.display().to_string())
    );
    // The config's own model folder is no longer a root.
    let v = c.request(&folder_request(0x34, "models"));
    assert_eq!(first_code(&v), 1, "{v}");
}
