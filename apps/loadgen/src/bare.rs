//! The HTTP limit of a machine, for comparison: an actix-web server whose only handler
//! reads the body, parses it as JSON and answers `202`, with nothing else Aurore does
//! (no validation, journal, buffer or store).

use actix_web::{App, HttpResponse, HttpServer, web};

#[derive(Debug, clap::Args)]
pub struct BareArgs {
    /// Port to listen on (127.0.0.1).
    #[arg(long, default_value_t = 18099)]
    port: u16,
    /// Largest body taken.
    #[arg(long, default_value_t = 8 * 1024 * 1024)]
    max_body_bytes: usize,
}

async fn accept(body: web::Bytes) -> HttpResponse {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(_) => HttpResponse::Accepted().json(serde_json::json!({"status": "accepted"})),
        Err(_) => HttpResponse::BadRequest().finish(),
    }
}

pub async fn run(args: BareArgs) -> anyhow::Result<()> {
    let limit = args.max_body_bytes;
    eprintln!("bare handler listening on http://127.0.0.1:{}", args.port);
    HttpServer::new(move || {
        App::new().app_data(web::PayloadConfig::new(limit)).route("/events", web::post().to(accept))
    })
    .bind(("127.0.0.1", args.port))?
    .run()
    .await?;
    Ok(())
}
